package app

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/catalog"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// ErrPreconditionFailed means the command named an expected version
// (If-Match) and the quote is at another one. Nothing was appended.
var ErrPreconditionFailed = errors.New("the quote is not at the expected version")

// PreconditionFailedError is ErrPreconditionFailed with the versions, so
// that the caller can be told the current one.
type PreconditionFailedError struct {
	Expected, Actual int64
}

func (e *PreconditionFailedError) Error() string {
	return fmt.Sprintf("%v: expected version %d, the quote is at %d", ErrPreconditionFailed, e.Expected, e.Actual)
}

func (e *PreconditionFailedError) Is(target error) bool { return target == ErrPreconditionFailed }

// DefaultMaxRetries bounds how often a decision is re-run after a version
// conflict before the conflict is returned.
const DefaultMaxRetries = 5

// TxHook runs inside the transaction that appends a command's events, with
// the events as stored, so that rows derived from them (inline read models,
// idempotency records) commit together with the events or not at all.
type TxHook func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error

// BatchHook is a TxHook that only writes, so its statements can travel on
// the batch that carries the append: queued on b, they run after the
// inserts in the append's transaction and commit with the events or not at
// all. With BatchHooks alone (no TxHook), a command's append is one round
// trip (eventstore.Store.AppendCommit). events are the command's events as
// they will be recorded: without position, transaction id, hash or recorded
// time (that is the transaction's now()). A statement must fail in
// PostgreSQL to stop the commit; it must not need what another queued
// statement returns.
type BatchHook func(ctx context.Context, b *pgx.Batch, events []eventstore.Event) error

// Service runs the commands of the change-order flow.
type Service struct {
	pool       *pgxpool.Pool
	store      *eventstore.Store
	clock      domain.Clock
	newID      func() uuid.UUID
	maxRetries int
	hooks      []TxHook
	batchHooks []BatchHook
	quotes     *quoteCache
	catalogs   catalog.Cache
	storeOpts  []eventstore.Option
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock (the system clock by default).
func WithClock(c domain.Clock) Option { return func(s *Service) { s.clock = c } }

// WithIDs sets how new quote and command ids are made (random by default).
func WithIDs(newID func() uuid.UUID) Option { return func(s *Service) { s.newID = newID } }

// WithMaxRetries sets how often a decision is re-run after a conflict.
func WithMaxRetries(n int) Option { return func(s *Service) { s.maxRetries = n } }

// WithTxHook adds a hook that runs in every append transaction.
func WithTxHook(h TxHook) Option { return func(s *Service) { s.hooks = append(s.hooks, h) } }

// WithBatchHook adds a hook that queues writes in every append transaction.
func WithBatchHook(h BatchHook) Option {
	return func(s *Service) { s.batchHooks = append(s.batchHooks, h) }
}

// WithQuoteCache sets how many quotes are kept in memory between commands
// (DefaultQuoteCache; 0: none, every command loads its quote's whole
// stream).
func WithQuoteCache(n int) Option { return func(s *Service) { s.quotes = newQuoteCache(n) } }

// WithStoreOptions configures the service's event store, e.g.
// eventstore.WithGroupCommit: concurrent commands then share a transaction
// and a round trip (by default each command commits alone).
func WithStoreOptions(opts ...eventstore.Option) Option {
	return func(s *Service) { s.storeOpts = append(s.storeOpts, opts...) }
}

// New returns a Service on the pool's event store.
func New(pool *pgxpool.Pool, opts ...Option) *Service {
	s := &Service{
		pool: pool, clock: domain.SystemClock{},
		newID: uuid.New, maxRetries: DefaultMaxRetries, quotes: newQuoteCache(DefaultQuoteCache),
	}
	for _, o := range opts {
		o(s)
	}
	// Commands grouped in one transaction check the catalog once.
	storeOpts := append([]eventstore.Option{eventstore.WithMerged(catalog.ExpectRevisionSQL, catalog.ExpectRevisionsSQL)}, s.storeOpts...)
	s.store = eventstore.New(pool, storeOpts...)
	return s
}

// Store returns the event store the service appends to.
func (s *Service) Store() *eventstore.Store { return s.store }

// Meta is what every command carries besides its own fields.
type Meta struct {
	Actor domain.Actor
	// CorrelationID ties together everything one request caused; it
	// defaults to the command id.
	CorrelationID string
	// CausationID is what caused this command (a request or message id); it
	// defaults to a new command id.
	CausationID string
	// ExpectedVersion, when set, is the quote version the caller saw
	// (If-Match): a quote at another version gives ErrPreconditionFailed.
	ExpectedVersion *int64
	// InBatch, when set, queues writes that commit with the command's
	// events, after the hooks', as a BatchHook does, with the command's
	// result (its Events as a BatchHook gets them): the HTTP layer stores
	// its idempotent response so. It does not run when the command appends
	// nothing.
	InBatch func(ctx context.Context, b *pgx.Batch, r Result) error
}

// Result is the outcome of a command on a quote.
type Result struct {
	QuoteID uuid.UUID
	// Version is the quote's version after the command.
	Version int64
	// Events are the events the command appended, to every stream, in
	// order; empty when the command changed nothing.
	Events []eventstore.Event
	// Quote is the quote's state after the command.
	Quote *domain.ChangeQuote
}

// changed is an aggregate with new events to append.
type changed interface {
	Changes() []domain.Event
	ExpectedVersion() int64
}

type pending struct {
	streamID, streamType string
	agg                  changed
}

// runQuote is the unit of work for a command on an existing quote: load,
// check the expected version, decide, append; on a version conflict, again.
func (s *Service) runQuote(ctx context.Context, m Meta, quoteID uuid.UUID,
	decide func(ctx context.Context, q *domain.ChangeQuote) (also []pending, err error)) (Result, error) {
	return s.runQuoteWith(ctx, m, quoteID, false, func(ctx context.Context, q *domain.ChangeQuote, _ *domain.Catalog) ([]pending, error) {
		return decide(ctx, q)
	})
}

// runQuoteWith is runQuote for a decision that may need the catalog
// (withCatalog): it comes with the quote's load, in the same round trip.
func (s *Service) runQuoteWith(ctx context.Context, m Meta, quoteID uuid.UUID, withCatalog bool,
	decide func(ctx context.Context, q *domain.ChangeQuote, cat *domain.Catalog) (also []pending, err error)) (Result, error) {
	if res, done, err := s.onKept(ctx, m, quoteID, withCatalog, decide); done {
		return res, err
	}
	for attempt := 0; ; attempt++ {
		q, cat, err := s.quoteAndCatalog(ctx, m.Actor, quoteID, withCatalog)
		if err != nil {
			return Result{}, err
		}
		if m.ExpectedVersion != nil && *m.ExpectedVersion != q.Version() {
			return Result{}, &PreconditionFailedError{Expected: *m.ExpectedVersion, Actual: q.Version()}
		}
		also, err := decide(ctx, q, cat)
		var events []eventstore.Event
		if err == nil {
			streams := append([]pending{{quoteID.String(), domain.StreamChangeQuote, q}}, also...)
			events, err = s.append(ctx, m, streams, Result{QuoteID: quoteID, Version: q.Version(), Quote: q}, nil)
		}
		if errors.Is(err, eventstore.ErrVersionConflict) {
			if attempt == s.maxRetries {
				return Result{}, fmt.Errorf("gave up after %d attempts: %w", attempt+1, err)
			}
			// Someone else wrote first: decide again on what they wrote,
			// after a short random pause so that the losers spread out.
			if err := pause(ctx, attempt); err != nil {
				return Result{}, err
			}
			continue
		}
		if err != nil {
			return Result{}, err
		}
		if len(events) > 0 {
			s.quotes.put(q) // as the committed events left it
		}
		return Result{QuoteID: quoteID, Version: q.Version(), Events: events, Quote: q}, nil
	}
}

// onKept runs a command on the quote (and catalog) kept in memory, reading
// nothing first: the append, with its read models and COMMIT, is then the
// command's only round trip. The kept state may be behind the log, so the
// decision stands only if its append commits: the append's version check
// refuses it when the quote moved on, and catalog.ExpectRevisionSQL when
// the products changed. Any other outcome of a decision on kept state (a
// refusal, a command that changes nothing, a conflict) may be an artefact
// of stale state, so onKept reports it not done, and the command is decided
// again on a fresh load. done is true when the command was carried out, or
// failed for a reason a fresh load would not change (a database error, a
// concurrent request's idempotency key).
func (s *Service) onKept(ctx context.Context, m Meta, quoteID uuid.UUID, withCatalog bool,
	decide func(ctx context.Context, q *domain.ChangeQuote, cat *domain.Catalog) ([]pending, error)) (res Result, done bool, err error) {
	q := s.quotes.get(quoteID)
	if q == nil || q.MSPID() != m.Actor.MSPID || (m.ExpectedVersion != nil && *m.ExpectedVersion != q.Version()) {
		return Result{}, false, nil
	}
	var cat *domain.Catalog
	var guard func(b *pgx.Batch)
	if withCatalog {
		var revision int64
		if cat, revision = s.catalogs.Kept(); cat == nil {
			return Result{}, false, nil
		}
		guard = func(b *pgx.Batch) { b.Queue(catalog.ExpectRevisionSQL, revision) }
	}
	also, err := decide(ctx, q, cat)
	if err != nil || len(q.Changes()) == 0 {
		return Result{}, false, nil
	}
	streams := append([]pending{{quoteID.String(), domain.StreamChangeQuote, q}}, also...)
	events, err := s.append(ctx, m, streams, Result{QuoteID: quoteID, Version: q.Version(), Quote: q}, guard)
	switch {
	case errors.Is(err, eventstore.ErrVersionConflict) || catalog.RevisionMoved(err):
		return Result{}, false, nil
	case err != nil:
		return Result{}, true, err
	}
	s.quotes.put(q)
	return Result{QuoteID: quoteID, Version: q.Version(), Events: events, Quote: q}, true, nil
}

// append stores the aggregates' new events, all or none, each stream at the
// version it was loaded at, with the command's metadata.
//
// guard, when set, queues statements that must hold for the decision to
// stand (catalog.ExpectRevisionSQL); they run in the append's transaction,
// after the inserts and before the hooks' writes, and a failure rolls it
// back.
func (s *Service) append(ctx context.Context, m Meta, streams []pending, res Result, guard func(b *pgx.Batch)) ([]eventstore.Event, error) {
	commandID := s.newID().String()
	md := eventstore.Metadata{
		MSPID: m.Actor.MSPID, UserID: m.Actor.UserID,
		CorrelationID: m.CorrelationID, CausationID: m.CausationID,
	}
	if md.CausationID == "" {
		md.CausationID = commandID
	}
	if md.CorrelationID == "" {
		md.CorrelationID = md.CausationID
	}
	var appends []eventstore.Append
	for _, p := range streams {
		changes := p.agg.Changes()
		if len(changes) == 0 {
			continue
		}
		a := eventstore.Append{StreamID: p.streamID, StreamType: p.streamType, ExpectedVersion: p.agg.ExpectedVersion()}
		for _, e := range changes {
			typ, schema, data, err := domain.EncodeEvent(e)
			if err != nil {
				return nil, err
			}
			a.Events = append(a.Events, eventstore.NewEvent{Type: typ, SchemaVersion: schema, Data: data, Metadata: md})
		}
		appends = append(appends, a)
	}
	if len(appends) == 0 {
		return nil, nil
	}
	if len(s.hooks) == 0 && len(s.batchHooks) == 0 && m.InBatch == nil && guard == nil {
		return s.store.Append(ctx, appends...)
	}
	// The hooks learn the aggregates as the events leave them (After), so
	// that an inline read model need not load the streams again.
	after := make(map[string]any, len(streams))
	for _, p := range streams {
		after[p.streamID] = p.agg
	}
	ctx = context.WithValue(ctx, afterKey{}, after)
	queue := func(b *pgx.Batch, events []eventstore.Event) error {
		if guard != nil {
			guard(b)
		}
		for _, h := range s.batchHooks {
			if err := h(ctx, b, events); err != nil {
				return err
			}
		}
		if m.InBatch != nil {
			res.Events = events
			return m.InBatch(ctx, b, res)
		}
		return nil
	}
	if len(s.hooks) == 0 {
		// BEGIN, the inserts, the queued writes and COMMIT: one round trip.
		return s.store.AppendCommit(ctx, queue, appends...)
	}
	// TxHooks may read, so they run once the inserts are in: BEGIN goes
	// with the inserts (one round trip), then the hooks, then the queued
	// writes in one more, then COMMIT.
	tx, stored, err := s.store.BeginAppend(ctx, appends...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit
	for _, h := range s.hooks {
		if err := h(ctx, tx, stored); err != nil {
			return nil, err
		}
	}
	b := &pgx.Batch{}
	if err := queue(b, stored); err != nil {
		return nil, err
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit the command's events: %w", err)
	}
	return stored, nil
}

type afterKey struct{}

// After gives a TxHook the aggregate that the command's events leave in the
// stream streamID (a *domain.ChangeQuote or a *domain.Customer, its
// Version that of the stream's last new event), or nil when ctx is not a
// hook's or the command did not write that stream. It is the state a
// reader would get by loading the stream in the hook's transaction.
func After(ctx context.Context, streamID string) any {
	after, _ := ctx.Value(afterKey{}).(map[string]any)
	return after[streamID]
}

// pause waits a random 0 to 2^attempt milliseconds (at most 64), or until
// the context ends.
func pause(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
