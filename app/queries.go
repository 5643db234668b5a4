package app

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/catalog"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

func notFound(format string, args ...any) error {
	return &domain.Error{Code: domain.CodeNotFound, Detail: fmt.Sprintf(format, args...)}
}

// LoadQuote rebuilds a quote of the actor's MSP from its events, whole or as
// it stood at a version or a time. Another MSP's quote is not found.
func (s *Service) LoadQuote(ctx context.Context, actor domain.Actor, quoteID uuid.UUID, opts eventstore.LoadOptions) (*domain.ChangeQuote, error) {
	return load(ctx, s, actor, quoteID.String(), domain.StreamChangeQuote, opts, domain.LoadChangeQuote)
}

// LoadCustomer rebuilds one of the actor's customers from its events.
func (s *Service) LoadCustomer(ctx context.Context, actor domain.Actor, customerID string) (*domain.Customer, error) {
	return load(ctx, s, actor, customerID, domain.StreamCustomer, eventstore.LoadOptions{}, domain.LoadCustomer)
}

// load rebuilds an aggregate of the actor's MSP; anything else (no stream,
// another type of stream, another MSP's) is not found.
func load[A interface{ MSPID() string }](ctx context.Context, s *Service, actor domain.Actor, streamID, streamType string,
	opts eventstore.LoadOptions, rebuild func([]domain.Event) (A, error)) (A, error) {
	stored, err := s.store.Load(ctx, streamID, opts)
	if err != nil {
		return *new(A), err
	}
	return owned(actor, streamID, streamType, stored, rebuild)
}

// owned rebuilds an aggregate of the actor's MSP from its loaded stream.
func owned[A interface{ MSPID() string }](actor domain.Actor, streamID, streamType string,
	stored []eventstore.Event, rebuild func([]domain.Event) (A, error)) (A, error) {
	var zero A
	history, err := decodeStream(stored, streamType)
	if err != nil {
		return zero, err
	}
	if len(history) == 0 {
		return zero, notFound("%s %q not found", strings.ReplaceAll(streamType, "_", " "), streamID)
	}
	agg, err := rebuild(history)
	if err != nil {
		return zero, fmt.Errorf("rebuild %s %q: %w", streamType, streamID, err)
	}
	if agg.MSPID() != actor.MSPID {
		return zero, notFound("%s %q not found", strings.ReplaceAll(streamType, "_", " "), streamID)
	}
	return agg, nil
}

// decodeStream decodes a loaded stream; a stream of another type is
// treated as absent, so an id can never reach the wrong aggregate.
func decodeStream(stored []eventstore.Event, streamType string) ([]domain.Event, error) {
	if len(stored) > 0 && stored[0].StreamType != streamType {
		return nil, nil
	}
	return DecodeEvents(stored)
}

// QuoteHistory returns the stored events of one of the actor's quotes, in
// stream order, up to a version or a time: what an auditor reads.
func (s *Service) QuoteHistory(ctx context.Context, actor domain.Actor, quoteID uuid.UUID, opts eventstore.LoadOptions) ([]eventstore.Event, error) {
	stored, err := s.store.Load(ctx, quoteID.String(), opts)
	if err != nil {
		return nil, err
	}
	if len(stored) == 0 || stored[0].StreamType != domain.StreamChangeQuote {
		return nil, notFound("change quote %q not found", quoteID)
	}
	history, err := DecodeEvents(stored[:1])
	if err != nil {
		return nil, err
	}
	if opened, ok := history[0].(domain.ChangeQuoteOpened); !ok || opened.MSPID != actor.MSPID {
		return nil, notFound("change quote %q not found", quoteID)
	}
	return stored, nil
}

// DecodeEvents turns stored events into domain events.
func DecodeEvents(stored []eventstore.Event) ([]domain.Event, error) {
	out := make([]domain.Event, len(stored))
	for i, e := range stored {
		d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			return nil, fmt.Errorf("stream %s version %d: %w", e.StreamID, e.Version, err)
		}
		out[i] = d
	}
	return out, nil
}

// Catalog reads the product catalog.
func (s *Service) Catalog(ctx context.Context) (*domain.Catalog, error) {
	var revision int64
	if err := s.pool.QueryRow(ctx, catalog.RevisionSQL).Scan(&revision); err != nil {
		return nil, fmt.Errorf("read the catalog's revision: %w", err)
	}
	return s.catalogs.At(ctx, s.pool, revision)
}

// quoteAndCatalog loads one of the actor's quotes and, when withCatalog, in
// the same round trip, the catalog's revision, then gives the catalog as of
// that revision (kept in memory until the products change). A quote kept in
// memory (quoteCache) is read from the log only from the version after it.
func (s *Service) quoteAndCatalog(ctx context.Context, actor domain.Actor, quoteID uuid.UUID, withCatalog bool) (*domain.ChangeQuote, *domain.Catalog, error) {
	var stored []eventstore.Event
	var revision int64
	cached := s.quotes.get(quoteID)
	var opts eventstore.LoadOptions
	if cached != nil {
		opts.AfterVersion = cached.Version()
	}
	b := &pgx.Batch{}
	if err := eventstore.QueueLoad(b, quoteID.String(), opts, &stored); err != nil {
		return nil, nil, err
	}
	if withCatalog {
		b.Queue(catalog.RevisionSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&revision) })
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("load change quote %s: %w", quoteID, err)
	}
	var q *domain.ChangeQuote
	var err error
	if cached != nil {
		q, err = advance(actor, cached, stored)
	} else {
		q, err = owned(actor, quoteID.String(), domain.StreamChangeQuote, stored, domain.LoadChangeQuote)
	}
	if err != nil {
		return nil, nil, err
	}
	if len(stored) > 0 {
		s.quotes.put(q)
	}
	if !withCatalog {
		return q, nil, nil
	}
	cat, err := s.catalogs.At(ctx, s.pool, revision)
	if err != nil {
		return nil, nil, err
	}
	return q, cat, nil
}

func (s *Service) mspName(ctx context.Context, mspID string) (string, error) {
	var name string
	err := s.pool.QueryRow(ctx, `SELECT name FROM msps WHERE id = $1`, mspID).Scan(&name)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", notFound("MSP %q not found", mspID)
	}
	if err != nil {
		return "", fmt.Errorf("read MSP %q: %w", mspID, err)
	}
	return name, nil
}
