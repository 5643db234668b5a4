package app_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/projections"
)

// roundTrips counts what a pool sends to the server: each query and each
// batch is one round trip.
// roundTrips counts a pool's round trips, and keeps the arguments of the
// stream loads sent in batches.
type roundTrips struct {
	n     atomic.Int64
	mu    sync.Mutex
	loads [][]any
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	if strings.Contains(d.SQL, "FROM events\nWHERE stream_id") {
		r.mu.Lock()
		r.loads = append(r.loads, d.Args)
		r.mu.Unlock()
	}
}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// tracedService is the command path as upsell serve runs it (the inline
// read models in the append transaction) on a pool whose round trips are
// counted, with 64 quotes opened on one customer.
func tracedService(tb testing.TB) (svc *app.Service, trips *roundTrips, actor domain.Actor, quotes []uuid.UUID, product string, seats int) {
	tb.Helper()
	ctx := context.Background()
	url, err := testdb.URL("appbench")
	if err != nil {
		tb.Fatal(err)
	}
	testdb.Pool(tb, "appbench") // made fresh and migrated
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	trips = &roundTrips{}
	cfg.ConnConfig.Tracer = trips
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	raw, err := os.ReadFile("../fixtures/import-example.json")
	if err != nil {
		tb.Fatal(err)
	}
	f, err := importer.Parse(strings.NewReader(string(raw)))
	if err != nil {
		tb.Fatal(err)
	}
	f.Customers = f.Customers[:1]
	f.Customers[0].ID = "cust-bench-" + uuid.NewString()[:8]
	if _, err := importer.Import(ctx, eventstore.New(pool), f, domain.SystemClock{}); err != nil {
		tb.Fatal(err)
	}
	svc = app.New(pool, app.WithBatchHook(projections.InlineBatch))
	actor = domain.Actor{MSPID: f.MSPs[0].ID, UserID: f.MSPs[0].Users[0].ID}
	quotes = make([]uuid.UUID, 64)
	for i := range quotes {
		res, err := svc.OpenChangeQuote(ctx, app.Meta{Actor: actor}, f.Customers[0].ID)
		if err != nil {
			tb.Fatal(err)
		}
		quotes[i] = res.QuoteID
	}
	line := f.Customers[0].Subscriptions[0]
	return svc, trips, actor, quotes, line.ProductCode, line.Seats
}

// A seat change on a quote this process keeps in memory takes one round
// trip in the application layer (the HTTP layer adds none while its key
// cache listens): BEGIN, the catalog's guard, the insert, the inline read
// models and COMMIT as one batch, decided on the kept quote and catalog.
// A second would be a regression.
func TestChangeSeatsRoundTrips(t *testing.T) {
	svc, trips, actor, quotes, product, seats := tracedService(t)
	ctx := context.Background()
	if _, err := svc.Catalog(ctx); err != nil { // the first read of the catalog
		t.Fatal(err)
	}
	for i := range 3 {
		trips.n.Store(0)
		if _, err := svc.ChangeSeats(ctx, app.Meta{Actor: actor}, quotes[0], product, seats+1+i); err != nil {
			t.Fatal(err)
		}
		if got := trips.n.Load(); got != 1 {
			t.Errorf("seat change %d took %d round trips, want 1", i+1, got)
		}
	}
}

// When another process appended to a kept quote, the command's append on
// the kept state is refused, and the quote is read again from the version
// after the kept one: the other process's events only.
func TestCommandReadsOnlyNewEvents(t *testing.T) {
	svc, trips, actor, quotes, product, seats := tracedService(t)
	other := app.New(testdb.Pool(t, "appbench"), app.WithBatchHook(projections.InlineBatch)) // keeps nothing of svc's
	ctx := context.Background()
	res, err := svc.ChangeSeats(ctx, app.Meta{Actor: actor}, quotes[1], product, seats+1)
	if err != nil {
		t.Fatal(err)
	}
	kept := res.Version
	for i := range 2 {
		if _, err := other.ChangeSeats(ctx, app.Meta{Actor: actor}, quotes[1], product, seats+10+i); err != nil {
			t.Fatal(err)
		}
	}
	trips.mu.Lock()
	trips.loads = nil
	trips.mu.Unlock()
	if res, err = svc.ChangeSeats(ctx, app.Meta{Actor: actor}, quotes[1], product, seats+20); err != nil {
		t.Fatal(err)
	}
	trips.mu.Lock()
	loads := trips.loads
	trips.mu.Unlock()
	if len(loads) != 1 || len(loads[0]) != 3 || loads[0][1] != kept {
		t.Errorf("loaded with %v, want one load of the versions after %d", loads, kept)
	}
	if res.Version != kept+3 {
		t.Errorf("version %d after the command, want %d", res.Version, kept+3)
	}
}

// BenchmarkChangeSeats runs seat raises one at a time, spread over the 64
// quotes, and reports the round trips a command takes (roundtrips/op)
// beside its time and allocations.
func BenchmarkChangeSeats(b *testing.B) {
	svc, trips, actor, quotes, product, seats := tracedService(b)
	ctx := context.Background()
	b.ReportAllocs()
	trips.n.Store(0)
	n := 0
	for i := 0; b.Loop(); i++ {
		n++
		if _, err := svc.ChangeSeats(ctx, app.Meta{Actor: actor}, quotes[i%len(quotes)], product, seats+1+i/len(quotes)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(trips.n.Load())/float64(n), "roundtrips/op")
}
