package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/relay"
)

// While the relay publishes a batch it holds no transaction id, so it holds
// back no reader of the log: an event appended meanwhile is readable at
// once, not when the relay's batch ends. (Locking its checkpoint row FOR
// UPDATE, as a rebuildable projector does, would give its transaction an
// id at the start of the batch.)
func TestRelayHoldsNoReaderBackWhilePublishing(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	first := appendRound(t, pool, []string{"horizon-1"})[0]
	inHook := make(chan struct{})
	release := make(chan struct{})
	hooked := false
	hook := func(ctx context.Context, _ []eventstore.Event) error {
		if !hooked {
			hooked = true
			close(inHook)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	}
	startRelay(t, pool, sqlTransport(t), "relay", relay.Options{AfterPublish: hook})
	select {
	case <-inHook:
	case <-time.After(30 * time.Second):
		t.Fatal("the relay did not publish its first batch within 30 s")
	}
	defer close(release)
	second := appendRound(t, pool, []string{"horizon-2"})[0]
	// Other tests' short transactions may hold the server's horizon for a
	// moment; the relay's paused batch must not hold it at all.
	store := eventstore.New(pool)
	deadline := time.Now().Add(5 * time.Second)
	for {
		events, _, err := store.ReadLog(t.Context(), cursorOf(first), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) > 0 && events[0].ID == second.ID {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("an event appended while the relay publishes is not readable after 5 s: the relay's batch holds the log's readers back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
