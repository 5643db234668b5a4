package benchtools_test

import (
	"fmt"
	"testing"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/benchtools"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/projections"
)

// The seeded log is one the service could have written: every hash chain
// holds, each submitted quote amended its customer, and every read model
// rebuilds from it.
func TestSeedLog(t *testing.T) {
	// Each mode on an MSP of its own: quotes appended whole, and
	// interleaved (more quotes in progress than a worker has customers).
	t.Run("whole", func(t *testing.T) { testSeedLog(t, 7, 1) })
	t.Run("interleaved", func(t *testing.T) { testSeedLog(t, 8, 64) })
}

func testSeedLog(t *testing.T, seed uint64, interleave int) {
	ctx := t.Context()
	pool := testdb.Pool(t, "benchtools")
	var calls int
	rep, err := benchtools.SeedLog(ctx, pool, benchtools.SeedConfig{
		Seed: seed, Customers: 40, Events: 600, Workers: 3, Users: 4, Interleave: interleave,
		Progress: func(done, total int64) { calls++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Customers != 40 || rep.Events < 600 || rep.Quotes == 0 || rep.Submitted == 0 {
		t.Fatalf("report %+v: want 40 customers, at least 600 events, quotes and submissions", rep)
	}
	if calls == 0 {
		t.Error("progress was never reported")
	}
	count := func(q string, args ...any) int64 {
		t.Helper()
		var n int64
		if err := pool.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	msp := fmt.Sprintf("lg-%d", seed)
	mine := `SELECT count(*) FROM events WHERE metadata->>'msp_id' = '` + msp + `'`
	if n := count(mine); n != rep.Events {
		t.Errorf("%d events of MSP %s in the log, the report says %d", n, msp, rep.Events)
	}
	for typ, want := range map[string]int64{
		"CustomerOnboarded": 40, "ChangeQuoteOpened": rep.Quotes,
		"OrderSubmitted": rep.Submitted, "SubscriptionAmended": rep.Submitted,
	} {
		if n := count(mine+` AND event_type = $1`, typ); n != want {
			t.Errorf("%d %s events, want %d", n, typ, want)
		}
	}
	// Whole, a quote is one transaction; interleaved, one per command.
	spread := count(`SELECT count(*) FROM (SELECT stream_id FROM events
WHERE stream_type = 'change_quote' AND metadata->>'msp_id' = $1
GROUP BY stream_id HAVING count(DISTINCT transaction_id) = count(*)) AS q`, msp)
	if want := map[bool]int64{true: 0, false: rep.Quotes}[interleave == 1]; spread != want {
		t.Errorf("%d quotes with one transaction per event, want %d", spread, want)
	}
	if _, err := eventstore.VerifyAll(ctx, pool, nil); err != nil {
		t.Fatalf("hash chains: %v", err)
	}
	for _, p := range projections.All() {
		if err := projections.Rebuild(ctx, pool, p, nil); err != nil {
			t.Fatalf("rebuild %s: %v", p.Name(), err)
		}
	}
	if n := count(`SELECT count(*) FROM quote_views WHERE msp_id = $1`, msp); n != rep.Quotes {
		t.Errorf("%d quote views, want %d", n, rep.Quotes)
	}
	if n := count(`SELECT count(*) FROM quote_views WHERE msp_id = $1 AND status = 'submitted'`, msp); n != rep.Submitted {
		t.Errorf("%d submitted quote views, want %d", n, rep.Submitted)
	}
	if n := count(`SELECT count(*) FROM customer_views WHERE msp_id = $1`, msp); n != 40 {
		t.Errorf("%d customer views, want 40", n)
	}
	if n := count(`SELECT coalesce(sum(version - 1), 0) FROM customer_views WHERE msp_id = $1`, msp); n != rep.Submitted {
		t.Errorf("the customers were amended %d times, want %d", n, rep.Submitted)
	}
}

func TestSeedLogRefuses(t *testing.T) {
	for _, cfg := range []benchtools.SeedConfig{
		{Customers: 0, Events: 10},
		{Customers: 10, Events: 5},
	} {
		if _, err := benchtools.SeedLog(t.Context(), nil, cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
