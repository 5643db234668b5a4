package projections_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// Tests that only read and write rows of their own (fresh customer ids,
// names with a random token) share the package database; tests that read
// the whole log or the "customers" checkpoint get an empty database each
// (testdb.Empty), so no other test's events or runner can disturb them.

var (
	alex = domain.Actor{MSPID: "msp-northwind", UserID: "u-alex"}
	kim  = domain.Actor{MSPID: "msp-tailspin", UserID: "u-kim"}
	now  = time.Date(2026, 11, 25, 9, 30, 0, 0, time.UTC)
)

// waitLimit bounds every wait for something asynchronous: generous, since
// it only matters when the test is about to fail anyway.
const waitLimit = 20 * time.Second

func sharedPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testdb.Pool(t, "projections")
}

// emptyPool is a migrated database of the test's own, dropped after it.
func emptyPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testdb.EmptyPool(t)
}

func fixture(t *testing.T) *importer.File {
	t.Helper()
	raw, err := os.ReadFile("../fixtures/import-example.json")
	if err != nil {
		t.Fatal(err)
	}
	f, err := importer.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// customerLike is a copy of the fixture's first customer (Contoso: 682
// EMAIL-SEC @3.25, 682 ARCHIVE @1.65) with another id, MSP and name.
func customerLike(t *testing.T, id, mspID, name string) importer.Customer {
	t.Helper()
	c := fixture(t).Customers[0]
	c.ID, c.MSPID, c.Name = id, mspID, name
	return c
}

// importCustomers imports customers with the fixture's MSPs and catalog, in
// one transaction.
func importCustomers(t *testing.T, pool *pgxpool.Pool, customers ...importer.Customer) {
	t.Helper()
	f := fixture(t)
	f.Customers = customers
	if _, err := importer.Import(t.Context(), eventstore.New(pool), f, domain.FixedClock{T: now}); err != nil {
		t.Fatal(err)
	}
}

// importFixture imports the whole example file (MSPs, catalog and its four
// customers) into an empty database.
func importFixture(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := importer.Import(t.Context(), eventstore.New(pool), fixture(t), domain.FixedClock{T: now}); err != nil {
		t.Fatal(err)
	}
}

func token() string { return "tk" + strings.ReplaceAll(uuid.NewString(), "-", "")[:10] }

func newApp(pool *pgxpool.Pool, opts ...app.Option) *app.Service {
	opts = append([]app.Option{app.WithBatchHook(projections.InlineBatch), app.WithClock(domain.FixedClock{T: now})}, opts...)
	return app.New(pool, opts...)
}

// must fails the test when a command fails: must(t)(svc.Command(...)).
func must(t *testing.T) func(app.Result, error) app.Result {
	return func(r app.Result, err error) app.Result {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func toJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// errorLog records what a Runner logs at level Error (a failed batch, a lost
// connection): a test that expects none checks it is empty.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Enabled(_ context.Context, level slog.Level) bool { return level >= slog.LevelError }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, b.String())
	return nil
}
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *errorLog) WithGroup(string) slog.Handler      { return l }

func (l *errorLog) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

// running is a Runner started in the background, with what it applied.
type running struct {
	t       *testing.T
	runner  *projections.Runner
	cancel  context.CancelFunc
	done    chan error
	applied atomic.Int64 // events, the sum of OnBatch
	batches atomic.Int64
	maxSize atomic.Int64 // the largest batch
	log     *errorLog
	stopped atomic.Bool
}

// startRunner runs a Runner of the customers projection (Poll 5 ms, and
// BatchSize when positive) until stop or the end of the test, counting what
// OnBatch is told.
func startRunner(t *testing.T, pool *pgxpool.Pool, batchSize int) *running {
	t.Helper()
	return startRunnerWith(t, pool, batchSize, nil)
}

// startRunnerWith is startRunner with a hook that runs after each batch is
// counted, on the runner's goroutine.
func startRunnerWith(t *testing.T, pool *pgxpool.Pool, batchSize int, after func(r *running, n int)) *running {
	t.Helper()
	r := &running{t: t, done: make(chan error, 1), log: &errorLog{}}
	r.runner = projections.NewRunner(pool, projections.Customers{}, slog.New(r.log))
	r.runner.Poll = 5 * time.Millisecond
	if batchSize > 0 {
		r.runner.BatchSize = batchSize
	}
	r.runner.OnBatch = func(n int) {
		r.applied.Add(int64(n))
		r.batches.Add(1)
		for {
			m := r.maxSize.Load()
			if int64(n) <= m || r.maxSize.CompareAndSwap(m, int64(n)) {
				break
			}
		}
		if after != nil {
			after(r, n)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.runner.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// stop ends the runner and waits until Run has returned.
func (r *running) stop() {
	r.t.Helper()
	if r.stopped.Swap(true) {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("Runner.Run returned %v, want nil after its context ended", err)
		}
	case <-time.After(waitLimit):
		r.t.Errorf("Runner.Run did not return within %s of its context ending", waitLimit)
	}
}

// wait waits until Run returns by itself (its context ended elsewhere).
func (r *running) wait() {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.stopped.Store(true)
		if err != nil {
			r.t.Errorf("Runner.Run returned %v, want nil after its context ended", err)
		}
	case <-time.After(waitLimit):
		r.t.Fatalf("Runner.Run did not return within %s", waitLimit)
	}
}

func (r *running) noErrors() {
	r.t.Helper()
	for _, m := range r.log.errors() {
		r.t.Errorf("runner logged an error: %s", m)
	}
}

func head(t testing.TB, pool *pgxpool.Pool) eventstore.Cursor {
	t.Helper()
	h, err := eventstore.New(pool).Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func checkpoint(t testing.TB, pool *pgxpool.Pool) eventstore.Cursor {
	t.Helper()
	c, err := projections.Checkpoint(context.Background(), pool, projections.Customers{}.Name())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newest is the cursor of the newest committed event, whether or not a
// transaction still open holds it back from the log's readers (Head).
func newest(t testing.TB, pool *pgxpool.Pool) eventstore.Cursor {
	t.Helper()
	var c eventstore.Cursor
	err := pool.QueryRow(context.Background(), `SELECT transaction_id, position FROM events
ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&c.TransactionID, &c.Position)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return c
}

// waitCaughtUp waits until the customers checkpoint has reached the newest
// event of the log (writers must have stopped) and returns it.
func waitCaughtUp(t *testing.T, pool *pgxpool.Pool) eventstore.Cursor {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		n := newest(t, pool)
		c := checkpoint(t, pool)
		if !c.Less(n) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the customers projection is at %s, the log's newest event at %s (head %s) after %s", c, n, head(t, pool), waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantApplied checks that what the runners' OnBatch were told adds up to the
// events in the log. A runner calls OnBatch once it has read the answer to
// its COMMIT, a moment after others can see the checkpoint move, so a total
// short of the log is waited for; one beyond it fails at once. Call it
// before stopping a runner that has just caught up: stopped with a commit's
// answer in flight, a Runner never tells OnBatch of that batch
// (TestOnBatchIsToldOfABatchCommittedAsTheRunnerStops).
func wantApplied(t *testing.T, pool *pgxpool.Pool, what string, runners ...*running) {
	t.Helper()
	want := eventCount(t, pool)
	sum := func() (s int64) {
		for _, r := range runners {
			s += r.applied.Load()
		}
		return s
	}
	deadline := time.Now().Add(waitLimit)
	for sum() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := sum(); got != want {
		t.Errorf("%s: OnBatch was told of %d events, the log holds %d", what, got, want)
	}
}

// waitFor is projections.WaitFor with the test's deadline.
func waitFor(t *testing.T, pool *pgxpool.Pool, c eventstore.Cursor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if err := projections.WaitFor(ctx, pool, projections.Customers{}.Name(), c); err != nil {
		t.Fatalf("WaitFor(%s): %v", c, err)
	}
}

// waitUntil polls cond until it holds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", waitLimit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func eventCount(t testing.TB, pool *pgxpool.Pool) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// cursorOf is the log cursor of a recorded event.
func cursorOf(e eventstore.Event) eventstore.Cursor {
	return eventstore.Cursor{TransactionID: e.TransactionID, Position: e.Position}
}

// lastOf returns the last event of a stream type among a command's events.
func lastOf(t *testing.T, events []eventstore.Event, streamType string) eventstore.Event {
	t.Helper()
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].StreamType == streamType {
			return events[i]
		}
	}
	t.Fatalf("no %s event among %d", streamType, len(events))
	return eventstore.Event{}
}

// snapshot is every row of a read model as jsonb, in key order.
func snapshot(t testing.TB, pool *pgxpool.Pool, table, key string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT to_jsonb(t)::text FROM `+pgx.Identifier{table}.Sanitize()+` t ORDER BY `+pgx.Identifier{key}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameRows(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s: row %d differs:\n got  %s\n want %s", what, i, got[i], want[i])
		}
	}
}

// wantQuoteView checks that quote_views shows exactly what the domain
// computes from the quote's events: the preview, the summary (or
// not_reviewed), and the list item's status, version and total.
func wantQuoteView(t *testing.T, pool *pgxpool.Pool, svc *app.Service, actor domain.Actor, id uuid.UUID) {
	t.Helper()
	ctx := t.Context()
	q, err := svc.LoadQuote(ctx, actor, id, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	views := projections.NewQueries(pool)
	p, err := views.Preview(ctx, actor.MSPID, id)
	if err != nil {
		t.Fatalf("Preview of %s: %v", id, err)
	}
	if got, want := toJSON(t, p), toJSON(t, q.Preview()); got != want {
		t.Errorf("quote %s v%d: preview\n got  %s\n want %s", id, q.Version(), got, want)
	}
	s, version, err := views.Summary(ctx, actor.MSPID, id)
	wantS, wantErr := q.Summary()
	switch {
	case wantErr != nil:
		if !errors.Is(wantErr, domain.ErrNotReviewed) {
			t.Fatalf("domain summary: %v", wantErr)
		}
		if !errors.Is(err, domain.ErrNotReviewed) {
			t.Errorf("quote %s v%d (not reviewed): Summary err = %v, want not_reviewed", id, q.Version(), err)
		}
	case err != nil:
		t.Errorf("quote %s v%d: Summary: %v", id, q.Version(), err)
	default:
		if got, want := toJSON(t, s), toJSON(t, wantS); got != want {
			t.Errorf("quote %s v%d: summary\n got  %s\n want %s", id, q.Version(), got, want)
		}
	}
	if version != q.Version() {
		t.Errorf("quote %s: Summary gives version %d, want %d", id, version, q.Version())
	}
	items, err := views.Quotes(ctx, actor.MSPID, q.CustomerID(), nil)
	if err != nil {
		t.Fatalf("Quotes of %s: %v", q.CustomerID(), err)
	}
	found := false
	for _, it := range items {
		if it.QuoteID != id {
			continue
		}
		found = true
		if it.Status != q.Status() || it.Version != q.Version() || it.NewMonthlyTotal.String() != q.Preview().NewMonthlyTotal.String() {
			t.Errorf("quote %s listed as %s v%d total %s, want %s v%d total %s", id, it.Status, it.Version, it.NewMonthlyTotal,
				q.Status(), q.Version(), q.Preview().NewMonthlyTotal)
		}
	}
	if !found {
		t.Errorf("quote %s is not in the list of customer %s", id, q.CustomerID())
	}
}

// wantCustomerView checks customer_views against the customer's events.
func wantCustomerView(t *testing.T, pool *pgxpool.Pool, svc *app.Service, actor domain.Actor, id string) {
	t.Helper()
	c, err := svc.LoadCustomer(t.Context(), actor, id)
	if err != nil {
		t.Fatal(err)
	}
	d, err := projections.NewQueries(pool).Customer(t.Context(), actor.MSPID, id)
	if err != nil {
		t.Fatalf("Customer %s: %v", id, err)
	}
	want := projections.CustomerDetail{
		ID: c.ID(), Name: c.Name(), MSPID: c.MSPID(), TotalUsers: c.TotalUsers(), Version: c.Version(),
		Currency: c.Currency(), MonthlyTotal: c.MonthlyTotal(), Lines: c.PricedLines(),
	}
	if got, want := toJSON(t, d), toJSON(t, want); got != want {
		t.Errorf("customer %s:\n got  %s\n want %s", id, got, want)
	}
}
