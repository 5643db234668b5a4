package projections

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// A rebuild's progress total: exact at once for a small log; for a large
// one the planner's estimate first, then the exact count, made meanwhile.
func TestCountEvents(t *testing.T) {
	pool := testdb.EmptyPool(t)
	ctx := t.Context()
	store := eventstore.New(pool)
	for i, typ := range []string{"customer", "customer", "customer", "change_quote"} {
		if _, err := store.Append(ctx, eventstore.Append{StreamID: typ + string(rune('a'+i)), StreamType: typ, ExpectedVersion: 0,
			Events: []eventstore.NewEvent{{Type: "Opened", Data: json.RawMessage(`{}`)}}}); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	customer := "customer"
	for _, c := range []struct {
		name   string
		ahead  float64
		ofType *string
		want   int64
	}{
		{"small log, one type", 100_000, &customer, 3},
		{"small log, every type", 100_000, nil, 4},
		{"large log, one type", 0, &customer, 3},
		{"large log, every type", 0, nil, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			countAhead = c.ahead
			defer func() { countAhead = 100_000 }()
			total, stop, err := countEvents(ctx, pool, conn.Conn(), c.ofType)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			if c.ahead > 0 && total.Load() != c.want {
				t.Fatalf("total %d at once, want the exact %d", total.Load(), c.want)
			}
			if total.Load() < 1 {
				t.Fatalf("total %d, want at least 1", total.Load())
			}
			deadline := time.Now().Add(10 * time.Second)
			for total.Load() != c.want {
				if time.Now().After(deadline) {
					t.Fatalf("total %d after 10s, want the exact %d", total.Load(), c.want)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
