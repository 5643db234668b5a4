package projections

import (
	"context"

	"github.com/jackc/pgx/v5"

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
