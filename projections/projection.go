package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// Projection turns events into the rows of one read-model table.
type Projection interface {
	// Name is how operators name it (upsell rebuild NAME) and the key of
	// its checkpoint and lock.
	Name() string
	// Table is the live table it writes.
	Table() string
	// Async reports whether a Runner follows the log for this projection
	// (true), or only the append transaction writes it (false).
	Async() bool
	// Apply writes the rows that the events lead to into table (the live
	// one, or one being rebuilt beside it), inside tx. Events of streams
	// the projection does not follow are ignored. Applying events already
	// applied leaves the rows as they are.
	Apply(ctx context.Context, tx pgx.Tx, table pgx.Identifier, events []eventstore.Event) error
}

// Inline is the app.TxHook that applies a command's events to every read
// model in the append transaction: the quote views, which only it writes,
// and the customer views, which the customers projector also writes for
// events that came another way (an import). Upserts guarded by the version
// make the second application a no-op. So a read right after a command
// shows its effect, whatever the projector's lag.
func Inline(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	for _, p := range All() {
		if err := p.Apply(ctx, tx, pgx.Identifier{p.Table()}, events); err != nil {
			return err
		}
	}
	return nil
}

// All is every projection, in the order rebuild runs them.
func All() []Projection { return []Projection{Quotes{}, Customers{}} }

// ByName finds a projection; the error lists the known names.
func ByName(name string) (Projection, error) {
	var names []string
	for _, p := range All() {
		if p.Name() == name {
			return p, nil
		}
		names = append(names, p.Name())
	}
	return nil, fmt.Errorf("unknown projection %q: known are %v", name, names)
}

// streamEvents is the events of one stream within a batch, in version order.
type streamEvents struct {
	id     string
	events []eventstore.Event
}

// byStream groups the events of streams of one type, in the order each
// stream first appears.
func byStream(events []eventstore.Event, streamType string) []*streamEvents {
	var out []*streamEvents
	index := map[string]*streamEvents{}
	for _, e := range events {
		if e.StreamType != streamType {
			continue
		}
		s, ok := index[e.StreamID]
		if !ok {
			s = &streamEvents{id: e.StreamID}
			index[e.StreamID] = s
			out = append(out, s)
		}
		s.events = append(s.events, e)
	}
	return out
}

// history returns the stream's events from version 1 up to the last one in
// the batch, decoded: from the batch alone when it starts the stream, else
// read in tx (which sees the events it appended itself).
func (s *streamEvents) history(ctx context.Context, tx pgx.Tx) ([]domain.Event, error) {
	stored := s.events
	last := stored[len(stored)-1]
	if stored[0].Version != 1 {
		var err error
		stored, err = eventstore.LoadTx(ctx, tx, s.id, eventstore.LoadOptions{UpToVersion: last.Version})
		if err != nil {
			return nil, err
		}
	}
	if int64(len(stored)) != last.Version {
		return nil, fmt.Errorf("stream %s: %d events up to version %d", s.id, len(stored), last.Version)
	}
	return app.DecodeEvents(stored)
}

// aggregate is what the projections read their rows from.
type aggregate interface {
	*domain.ChangeQuote | *domain.Customer
	Version() int64
}

// stateOf returns the aggregate as the stream's last event in the batch
// leaves it. In a command's append transaction that is the command's own
// aggregate (app.After), so nothing is read or decoded; otherwise the
// stream's history is replayed (see history).
func stateOf[A aggregate](ctx context.Context, tx pgx.Tx, s *streamEvents, replay func(A, []domain.Event) (A, error)) (A, error) {
	last := s.events[len(s.events)-1]
	if a, ok := app.After(ctx, s.id).(A); ok && a != nil && a.Version() == last.Version {
		return a, nil
	}
	var zero A
	history, err := s.history(ctx, tx)
	if err != nil {
		return zero, err
	}
	return replay(zero, history)
}

// upsertAll runs one version-guarded upsert per stream in one round trip.
func upsertAll(ctx context.Context, tx pgx.Tx, b *pgx.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}
