// Package audit is what an auditor reads: a change quote's history in
// words, its state at any version or time, and the verification of the
// events' hash chains (see eventstore.VerifyChain and docs/audit.md).
//
// It reads the event store directly, across MSPs: it serves operators with
// database access (`upsell audit`), never the HTTP API, whose callers see
// only their own MSP's quotes.
package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// ErrNotFound is matched (errors.Is) by a *NotFoundError.
var ErrNotFound = errors.New("change quote not found")

// NotFoundError means no change quote has the id: no event has it as its
// stream id, or its stream is not a change quote's.
type NotFoundError struct{ QuoteID uuid.UUID }

func (e *NotFoundError) Error() string { return fmt.Sprintf("change quote %s not found", e.QuoteID) }

// Is makes errors.Is(err, ErrNotFound) hold.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// AsOf is a point in a quote's history: a version, or a time.
type AsOf struct {
	Version int64     // from 1; 0 when Time is set
	Time    time.Time // the zero time when Version is set
}

// ParseAsOf reads a version (a whole number from 1) or an RFC 3339 time.
func ParseAsOf(s string) (AsOf, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 1 {
			return AsOf{}, fmt.Errorf("--as-of %s: a version counts from 1", s)
		}
		return AsOf{Version: n}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return AsOf{}, fmt.Errorf("--as-of %q is neither a version (a whole number from 1) nor an RFC 3339 time such as 2026-11-25T13:00:00Z", s)
	}
	return AsOf{Time: t}, nil
}

func (a AsOf) String() string {
	if a.Version > 0 {
		return "version " + strconv.FormatInt(a.Version, 10)
	}
	return a.Time.UTC().Format(time.RFC3339Nano)
}

// Entry is one event of the history with the change it records in words.
type Entry struct {
	eventstore.Event
	Change string
}

// History is a change quote's history as an auditor reads it.
type History struct {
	QuoteID uuid.UUID
	// Version is the quote's version now, whatever AsOf says.
	Version int64
	// Opened is the quote's first event, nil when it cannot be read (the
	// stream does not start with a ChangeQuoteOpened it can decode).
	Opened *domain.ChangeQuoteOpened
	// AsOf is the point the history stops at, nil for the whole history.
	AsOf *AsOf
	// Entries are the events up to AsOf, in version order.
	Entries []Entry
	// State is the quote rebuilt from Entries when AsOf is set.
	State *domain.ChangeQuote
	// Chain is nil when the hash chain of the whole stream verifies, else
	// the *eventstore.ChainError naming its first bad event.
	Chain error
	// Verified counts the events of the chain that verified.
	Verified int64
}

// Load reads a change quote's history from db, whole or up to asOf. An
// unknown quote is ErrNotFound; a version beyond the quote's, or a time
// before it was opened, is an error that says so.
func Load(ctx context.Context, db eventstore.DBTX, quoteID uuid.UUID, asOf *AsOf) (*History, error) {
	events, err := eventstore.LoadTx(ctx, db, quoteID.String(), eventstore.LoadOptions{})
	if err != nil {
		return nil, err
	}
	if len(events) == 0 || events[0].StreamType != domain.StreamChangeQuote {
		return nil, &NotFoundError{QuoteID: quoteID}
	}
	h := &History{QuoteID: quoteID, Version: events[len(events)-1].Version, AsOf: asOf}
	if first, err := domain.DecodeEvent(events[0].Type, events[0].SchemaVersion, events[0].Data); err == nil {
		if opened, ok := first.(domain.ChangeQuoteOpened); ok {
			h.Opened = &opened
		}
	}
	stats, chainErr := eventstore.VerifyChain(events)
	h.Chain, h.Verified = chainErr, stats.Events

	words := Describe(events)
	upTo := len(events)
	if asOf != nil {
		upTo = cut(events, *asOf)
		switch {
		case asOf.Version > h.Version:
			return nil, fmt.Errorf("change quote %s has no version %d: it is at version %d", quoteID, asOf.Version, h.Version)
		case upTo == 0:
			return nil, fmt.Errorf("change quote %s did not exist at %s: it was opened at %s", quoteID,
				asOf.Time.UTC().Format(time.RFC3339Nano), events[0].RecordedAt.UTC().Format(time.RFC3339Nano))
		}
	}
	for i, e := range events[:upTo] {
		h.Entries = append(h.Entries, Entry{Event: e, Change: words[i]})
	}
	if asOf != nil {
		decoded, err := app.DecodeEvents(events[:upTo])
		if err != nil {
			return nil, fmt.Errorf("rebuild change quote %s at %s: %w", quoteID, asOf, err)
		}
		if h.State, err = domain.LoadChangeQuote(decoded); err != nil {
			return nil, fmt.Errorf("rebuild change quote %s at %s: %w", quoteID, asOf, err)
		}
	}
	return h, nil
}

// cut returns how many events of the stream (in version order) stand at
// asOf. By time, it stops before the first event recorded after it, as
// eventstore.LoadOptions.UpTo does: a state is rebuilt from a prefix.
func cut(events []eventstore.Event, asOf AsOf) int {
	for i, e := range events {
		if asOf.Version > 0 && e.Version > asOf.Version || asOf.Version == 0 && e.RecordedAt.After(asOf.Time) {
			return i
		}
	}
	return len(events)
}
