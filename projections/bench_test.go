package projections_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/migrations"
	"github.com/upsell-dev/upsell/projections"
)

// The apply step of each projection over one batch of 500 events of the
// kind it follows, into an empty scratch copy of its table (so every event
// writes, as in a rebuild), inside a transaction rolled back after each
// batch. Run with -benchmem: allocations per batch show in review.
func BenchmarkApplyCustomers(b *testing.B) {
	benchmarkApply(b, projections.Customers{}, domain.StreamCustomer)
}
func BenchmarkApplyQuotes(b *testing.B) {
	benchmarkApply(b, projections.Quotes{}, domain.StreamChangeQuote)
}

const benchBatch = 500

func benchmarkApply(b *testing.B, p projections.Projection, streamType string) {
	ctx := b.Context()
	pool := benchLog(b)
	var batch []eventstore.Event
	for cur := (eventstore.Cursor{}); len(batch) < benchBatch; {
		events, next, err := eventstore.ReadCommittedTx(ctx, pool, cur, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(events) == 0 {
			b.Fatalf("the log holds %d %s events, want %d", len(batch), streamType, benchBatch)
		}
		for _, e := range events {
			if e.StreamType == streamType && len(batch) < benchBatch {
				batch = append(batch, e)
			}
		}
		cur = next
	}
	scratch := pgx.Identifier{"bench_" + p.Table()}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TEMP TABLE %s (LIKE %s INCLUDING ALL) ON COMMIT DROP`,
				scratch.Sanitize(), pgx.Identifier{p.Table()}.Sanitize())); err != nil {
				return err
			}
			if err := p.Apply(ctx, tx, scratch, batch); err != nil {
				return err
			}
			return errRollback
		})
		if err != errRollback {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "events/s")
}

var errRollback = fmt.Errorf("rolled back on purpose")

// benchLog is a database with 600 onboarded customers and, on the
// fixture's Contoso-like customers, 80 quotes taken through the whole flow
// (about 600 quote events).
func benchLog(b *testing.B) *pgxpool.Pool {
	b.Helper()
	ctx := b.Context()
	pool, err := pgxpool.New(ctx, testdb.Empty(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := migrations.Apply(ctx, pool); err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile("../fixtures/import-example.json")
	if err != nil {
		b.Fatal(err)
	}
	f, err := importer.Parse(bytes.NewReader(raw))
	if err != nil {
		b.Fatal(err)
	}
	base := f.Customers[0]
	f.Customers = nil
	for i := range 600 {
		c := base
		c.ID, c.Name = fmt.Sprintf("bench-%04d", i), fmt.Sprintf("Bench Customer %04d", i)
		f.Customers = append(f.Customers, c)
	}
	if _, err := importer.Import(ctx, eventstore.New(pool), f, domain.FixedClock{T: now}); err != nil {
		b.Fatal(err)
	}
	svc := app.New(pool, app.WithClock(domain.FixedClock{T: now}))
	m := app.Meta{Actor: domain.Actor{MSPID: base.MSPID, UserID: "u-alex"}}
	for i := range 80 {
		if err := quoteFlow(ctx, svc, m, fmt.Sprintf("bench-%04d", i)); err != nil {
			b.Fatal(err)
		}
	}
	return pool
}

func quoteFlow(ctx context.Context, svc *app.Service, m app.Meta, customerID string) error {
	r, err := svc.OpenChangeQuote(ctx, m, customerID)
	if err != nil {
		return err
	}
	id := r.QuoteID
	steps := []func() (app.Result, error){
		func() (app.Result, error) { return svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 700) },
		func() (app.Result, error) { return svc.AddProduct(ctx, m, id, "AWARENESS", "12 Month", 700) },
		func() (app.Result, error) { return svc.SaveQuote(ctx, m, id) },
		func() (app.Result, error) { return svc.ReviewOrder(ctx, m, id) },
		func() (app.Result, error) { return svc.Acknowledge(ctx, m, id, true, true) },
		func() (app.Result, error) { return svc.SubmitOrder(ctx, m, id) },
	}
	for _, step := range steps {
		if _, err := step(); err != nil {
			return fmt.Errorf("quote %s: %w", id, err)
		}
	}
	return nil
}
