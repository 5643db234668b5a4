package projections

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/eventstore"
)

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

// InlineBatch is Inline as an app.BatchHook: the rows are queued on the
// batch that carries the command's append and COMMIT, so the read models
// cost the command no round trip of their own. The rows come from the
// command's own aggregates (app.After), never from a read, and a quote's
// updated_at is the transaction's now(), which is the recorded_at its
// events get.
func InlineBatch(ctx context.Context, b *pgx.Batch, events []eventstore.Event) error {
	if err := queueRows(ctx, b, quoteRows, quoteInline(), events); err != nil {
		return err
	}
	return queueRows(ctx, b, customerRows, customerInline(), events)
}

// InlineMerges are the event store options that let a group commit write
// the rows InlineBatch queued for its commands with one statement per
// table (eventstore.WithMerged). Give them to the store InlineBatch's
// service appends with (app.WithStoreOptions).
func InlineMerges() []eventstore.Option {
	return []eventstore.Option{
		eventstore.WithMerged(quoteInline().sql, quoteInlineMerged()),
		eventstore.WithMerged(customerInline().sql, customerInlineMerged()),
	}
}

// The inline upserts write the live tables, a quote's updated_at as now().
var (
	quoteInline = sync.OnceValue(func() upsert {
		return quoteRows.upsert(pgx.Identifier{Quotes{}.Table()}, "updated_at")
	})
	customerInline = sync.OnceValue(func() upsert {
		return customerRows.upsert(pgx.Identifier{Customers{}.Table()}, "")
	})
	quoteInlineMerged = sync.OnceValue(func() string {
		return quoteRows.mergedUpsert(pgx.Identifier{Quotes{}.Table()}, "updated_at")
	})
	customerInlineMerged = sync.OnceValue(func() string {
		return customerRows.mergedUpsert(pgx.Identifier{Customers{}.Table()}, "")
	})
)

// queueRows queues the upsert of the row of every stream of r's type that
// events touch, made from the aggregate the command left.
func queueRows[A aggregate](ctx context.Context, b *pgx.Batch, r *streamRows[A], u upsert, events []eventstore.Event) error {
	for _, s := range byStream(events, r.streamType) {
		last := s.events[len(s.events)-1]
		agg, ok := app.After(ctx, s.id).(A)
		if !ok || agg == nil || agg.Version() != last.Version {
			return fmt.Errorf("project %s %s: the command left no aggregate at version %d to make its row from", r.streamType, s.id, last.Version)
		}
		row, err := r.row(agg, last)
		if err != nil {
			return fmt.Errorf("project %s %s: %w", r.streamType, s.id, err)
		}
		if u.skip >= 0 {
			row = append(row[:u.skip:u.skip], row[u.skip+1:]...)
		}
		b.Queue(u.sql, row...)
	}
	return nil
}
