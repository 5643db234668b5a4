package projections

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// historyLoads counts the stream histories a pool reads.
type historyLoads struct{ n atomic.Int64 }

func (h *historyLoads) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "FROM events\nWHERE stream_id") {
		h.n.Add(1)
	}
	return ctx
}

func (h *historyLoads) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A rebuild's catch-up advances the aggregates its fold left, batch after
// batch, and reads no stream's history again; its rows are those a full
// replay gives. Without the fold's aggregates it reads the history of each
// stream for every batch.
func TestCatchUpAdvancesTheFold(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base := testdb.EmptyPool(t)
	cfg := base.Config()
	loads := &historyLoads{}
	cfg.ConnConfig.Tracer = loads
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := eventstore.New(pool)

	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cat, err := domain.NewCatalog([]domain.Product{{
		Code: "P", Name: "P", PerUser: true, Currency: "USD", TermTypes: []string{"12 Month"},
		Tiers: []domain.Tier{{TermType: "12 Month", MinSeats: 1, UnitPrice: domain.MustMoney("2.00")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := domain.OnboardCustomer("cust-keeper", "msp-k", "Keeper", "USD",
		[]domain.Line{{ProductCode: "P", ProductName: "P", TermType: "12 Month", PerUser: true, Seats: 10, UnitPrice: domain.MustMoney("2.00")}}, at)
	if err != nil {
		t.Fatal(err)
	}
	q, err := domain.OpenChangeQuote(uuid.New(), c, "MSP", domain.Actor{MSPID: "msp-k", UserID: "u"}, at)
	if err != nil {
		t.Fatal(err)
	}
	// appendChanges stores what q recorded since the last call.
	var stored int
	appendChanges := func() []eventstore.Event {
		t.Helper()
		changes := q.Changes()[stored:]
		a := eventstore.Append{StreamID: q.ID().String(), StreamType: domain.StreamChangeQuote, ExpectedVersion: int64(stored)}
		for _, e := range changes {
			typ, schema, data, err := domain.EncodeEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			a.Events = append(a.Events, eventstore.NewEvent{Type: typ, SchemaVersion: schema, Data: data})
		}
		events, err := store.Append(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		stored += len(changes)
		return events
	}
	seats := 10
	raise := func(n int) []eventstore.Event {
		t.Helper()
		for range n {
			seats++
			if err := q.ChangeSeats(cat, "P", seats); err != nil {
				t.Fatal(err)
			}
		}
		return appendChanges()
	}

	folded := raise(3) // opened and three raises: what the fold read
	f := quoteRows.fold().(*fold[*domain.ChangeQuote])
	for _, e := range folded {
		d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.add(e, d); err != nil {
			t.Fatal(err)
		}
	}
	keeping := context.WithValue(ctx, keeperKey{}, keeper(f))
	table := pgx.Identifier{"quote_views"}
	applyIn := func(ctx context.Context, events []eventstore.Event) {
		t.Helper()
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return quoteRows.apply(ctx, tx, table, events) }); err != nil {
			t.Fatal(err)
		}
	}
	wantRow := func(version int64) {
		t.Helper()
		var got int64
		var total string
		if err := base.QueryRow(ctx, `SELECT version, preview::jsonb->>'new_monthly_total' FROM quote_views WHERE quote_id = $1`, q.ID()).Scan(&got, &total); err != nil {
			t.Fatal(err)
		}
		want, err := domain.ReplayChangeQuote(nil, q.Changes())
		if err != nil {
			t.Fatal(err)
		}
		if got != version || total != want.Preview().NewMonthlyTotal.String() {
			t.Errorf("row at version %d with the new monthly total %s, want %d and %s", got, total, version, want.Preview().NewMonthlyTotal)
		}
	}

	for batch := range 3 {
		loads.n.Store(0)
		applyIn(keeping, raise(2))
		if n := loads.n.Load(); n != 0 {
			t.Errorf("catch-up batch %d read %d stream histories, want none", batch+1, n)
		}
		wantRow(int64(stored))
	}
	// Without the fold's aggregates, the history is read.
	loads.n.Store(0)
	applyIn(ctx, raise(1))
	if n := loads.n.Load(); n != 1 {
		t.Errorf("without a keeper: %d history reads, want 1", n)
	}
	wantRow(int64(stored))
	// The keeper, now behind the stream, is not used as if it were current.
	loads.n.Store(0)
	applyIn(keeping, raise(1))
	if n := loads.n.Load(); n != 1 {
		t.Errorf("a keeper behind the stream: %d history reads, want 1", n)
	}
	wantRow(int64(stored))
}
