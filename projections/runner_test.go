package projections_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/projections"
)

// someCustomers imports n customers of alex's MSP (ids prefix-1 ...), each
// alone in its transaction when separately is set, else all in one.
func someCustomers(t *testing.T, pool *pgxpool.Pool, prefix string, n int, separately bool) []string {
	t.Helper()
	var ids []string
	var cs []importer.Customer
	for i := range n {
		id := fmt.Sprintf("%s-%02d", prefix, i+1)
		ids = append(ids, id)
		cs = append(cs, customerLike(t, id, alex.MSPID, fmt.Sprintf("Customer %s %02d", prefix, i+1)))
	}
	if separately {
		for _, c := range cs {
			importCustomers(t, pool, c)
		}
	} else {
		importCustomers(t, pool, cs...)
	}
	return ids
}

// submitted opens, reviews, acknowledges and submits an order raising the
// customer's EMAIL-SEC to seats, and returns the submit's result.
func submitted(t *testing.T, svc *app.Service, customer string, seats int) app.Result {
	t.Helper()
	ctx := t.Context()
	m := app.Meta{Actor: alex}
	id := must(t)(svc.OpenChangeQuote(ctx, m, customer)).QuoteID
	must(t)(svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", seats))
	must(t)(svc.ReviewOrder(ctx, m, id))
	must(t)(svc.Acknowledge(ctx, m, id, true, true))
	return must(t)(svc.SubmitOrder(ctx, m, id))
}

func TestRunnerProjectsCustomers(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	importFixture(t, pool)
	ids := someCustomers(t, pool, "cust-a", 12, false)
	ids = append(ids, someCustomers(t, pool, "cust-b", 8, true)...)
	ids = append(ids, "cust-contoso", "cust-adatum", "cust-1st-street")
	// A customer with no subscription yet: no lines, no users, 0.00.
	empty := customerLike(t, "cust-empty", alex.MSPID, "Empty Ltd")
	empty.Subscriptions, empty.Currency = nil, "USD"
	importCustomers(t, pool, empty)
	ids = append(ids, empty.ID)

	r := startRunner(t, pool, 3)
	at := waitCaughtUp(t, pool)
	svc := newApp(pool)
	for _, id := range ids {
		wantCustomerView(t, pool, svc, alex, id)
	}
	wantCustomerView(t, pool, svc, kim, "cust-fabrikam")
	wantApplied(t, pool, "caught up", r)
	if m := r.maxSize.Load(); m > 3 {
		t.Errorf("a batch applied %d events, BatchSize is 3", m)
	}
	if h := head(t, pool); at.Less(h) {
		t.Errorf("caught up at %s, behind the head %s", at, h)
	}

	// A submitted order amends the customer: once WaitFor returns for the
	// amendment, the row shows it.
	res := submitted(t, svc, "cust-b-03", 750)
	amended := lastOf(t, res.Events, domain.StreamCustomer)
	if amended.Type != "SubscriptionAmended" {
		t.Fatalf("the submit's customer event is %s", amended.Type)
	}
	waitFor(t, pool, cursorOf(amended))
	d, err := projections.NewQueries(pool).Customer(t.Context(), alex.MSPID, "cust-b-03")
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 2 || d.TotalUsers != 750 || d.Lines[0].Seats != 750 {
		t.Errorf("after the submit: version %d, %d users, lines %+v; want version 2, 750 users", d.Version, d.TotalUsers, d.Lines)
	}
	wantCustomerView(t, pool, svc, alex, "cust-b-03")
	if _, err := projections.NewQueries(pool).Customer(t.Context(), kim.MSPID, "cust-b-03"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("another MSP's customer: err = %v, want not_found", err)
	}
	if _, err := projections.NewQueries(pool).Customer(t.Context(), alex.MSPID, "cust-nobody"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("an unknown customer: err = %v, want not_found", err)
	}
	if d, err := projections.NewQueries(pool).Customer(t.Context(), alex.MSPID, empty.ID); err != nil ||
		d.Lines == nil || len(d.Lines) != 0 || d.TotalUsers != 0 || d.MonthlyTotal.String() != "0.00" {
		t.Errorf("a customer with no subscription: %+v, %v; want no lines, 0 users, 0.00", d, err)
	}
	waitCaughtUp(t, pool)
	wantApplied(t, pool, "after the submit", r)
	r.stop()
	r.noErrors()
}

// A runner stopped part-way resumes, in a new Runner, from its checkpoint:
// every event is applied once over both.
func TestRunnerResumesFromItsCheckpoint(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	importFixture(t, pool)
	ids := someCustomers(t, pool, "cust-r", 20, false)
	total := eventCount(t, pool)

	// The first runner stops itself once it has applied 9 events or more:
	// OnBatch runs once the batch has committed, so nothing more is applied
	// after it. (A batch may hold fewer than 3 events: the log's readers
	// wait for transactions still open anywhere on the server.)
	first := startRunnerWith(t, pool, 3, func(r *running, _ int) {
		if r.applied.Load() >= 9 {
			r.cancel()
		}
	})
	first.wait()
	first.noErrors()
	applied := first.applied.Load()
	if applied < 9 || applied > 11 || first.maxSize.Load() > 3 {
		t.Fatalf("the first runner applied %d events, the largest batch %d; want 9 to 11 in batches of at most 3", applied, first.maxSize.Load())
	}
	events, at, err := eventstore.New(pool).ReadLog(t.Context(), eventstore.Cursor{}, int(applied))
	if err != nil {
		t.Fatal(err)
	}
	if cp := checkpoint(t, pool); cp != at {
		t.Fatalf("after %d events the checkpoint is %s, the %dth event is at %s", applied, cp, applied, at)
	}
	var rows int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM customer_views`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	customers := 0
	for _, e := range events {
		if e.StreamType == domain.StreamCustomer {
			customers++
		}
	}
	if rows != customers {
		t.Errorf("%d rows after the first %d events, %d of them onboard a customer", rows, applied, customers)
	}

	second := startRunner(t, pool, 3)
	waitCaughtUp(t, pool)
	if eventCount(t, pool) != total {
		t.Fatal("the log grew")
	}
	wantApplied(t, pool, "the first and the second runner", first, second)
	second.stop()
	second.noErrors()

	// Events appended while no runner runs are applied by the next.
	more := someCustomers(t, pool, "cust-s", 5, true)
	third := startRunner(t, pool, 3)
	waitCaughtUp(t, pool)
	wantApplied(t, pool, "three runners", first, second, third)
	third.stop()
	third.noErrors()
	svc := newApp(pool)
	for _, id := range append(ids, more...) {
		wantCustomerView(t, pool, svc, alex, id)
	}
}

// holderOfLock returns the backend pid holding the customers projector's
// advisory lock in this database, and how many hold it.
func holderOfLock(t *testing.T, pool *pgxpool.Pool) (pid int32, holders int) {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT l.pid FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid::bigint = (hashtextextended($1, 0) >> 32) & 4294967295
    AND l.objid::bigint = hashtextextended($1, 0) & 4294967295
    AND l.objsubid = 1`, "upsell.projection.customers")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		holders++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return pid, holders
}

// Two runners of one projection: one leads and applies every batch, the
// other stands by; when the leader stops, the standby takes over.
func TestOneLeaderAndTakeover(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	importFixture(t, pool)
	someCustomers(t, pool, "cust-l", 10, false)

	a, b := startRunner(t, pool, 4), startRunner(t, pool, 4)
	waitCaughtUp(t, pool)
	someCustomers(t, pool, "cust-m", 6, true) // while both run
	waitCaughtUp(t, pool)
	wantApplied(t, pool, "two runners", a, b)

	leader, standby := a, b
	if b.applied.Load() > 0 {
		leader, standby = b, a
	}
	if standby.applied.Load() != 0 {
		t.Fatalf("both runners applied batches: %d and %d events", a.applied.Load(), b.applied.Load())
	}
	pid, holders := holderOfLock(t, pool)
	if holders != 1 {
		t.Fatalf("%d sessions hold the projector's lock, want 1", holders)
	}

	leader.stop()
	led := leader.applied.Load()
	before := checkpoint(t, pool)
	more := someCustomers(t, pool, "cust-n", 5, true)
	after := waitCaughtUp(t, pool)
	if !before.Less(after) {
		t.Fatalf("the checkpoint did not move after the leader stopped: %s, then %s", before, after)
	}
	wantApplied(t, pool, "leader and standby", leader, standby)
	if standby.applied.Load() == 0 {
		t.Fatal("the standby applied nothing after the leader stopped")
	}
	if leader.applied.Load() != led {
		t.Fatal("the stopped leader applied more batches")
	}
	newPid, holders := holderOfLock(t, pool)
	if holders != 1 || newPid == pid {
		t.Errorf("after the takeover %d sessions hold the lock (pid %d, the old leader's was %d); want 1 other", holders, newPid, pid)
	}
	svc := newApp(pool)
	for _, id := range more {
		wantCustomerView(t, pool, svc, alex, id)
	}
	standby.stop()
	a.noErrors()
	b.noErrors()
}

func TestLag(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	ctx := t.Context()
	importFixture(t, pool)
	someCustomers(t, pool, "cust-lag", 3, true)

	lag, err := projections.Lag(ctx, pool, "customers")
	if err != nil {
		t.Fatal(err)
	}
	if want := eventCount(t, pool); lag.Events != want || lag.Age <= 0 {
		t.Errorf("before any runner: %+v, want %d events and a positive age", lag, want)
	}

	r := startRunner(t, pool, 0)
	waitCaughtUp(t, pool)
	if lag, err = projections.Lag(ctx, pool, "customers"); err != nil || lag != (projections.LagReport{}) {
		t.Errorf("caught up: %+v, %v; want no lag", lag, err)
	}
	r.stop()
	r.noErrors()

	someCustomers(t, pool, "cust-lag2", 2, false)
	if lag, err = projections.Lag(ctx, pool, "customers"); err != nil || lag.Events != 2 || lag.Age <= 0 {
		t.Errorf("two events later: %+v, %v; want 2 events", lag, err)
	}
	r = startRunner(t, pool, 0)
	waitCaughtUp(t, pool)
	if lag, err = projections.Lag(ctx, pool, "customers"); err != nil || lag != (projections.LagReport{}) {
		t.Errorf("caught up again: %+v, %v; want no lag", lag, err)
	}
	r.stop()
	r.noErrors()
}

// WaitFor returns when the projection has passed the event, and with the
// context's error when it does not get there.
func TestWaitFor(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	importFixture(t, pool)
	h := newest(t, pool)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := projections.WaitFor(ctx, pool, "customers", h); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor with no runner: err = %v, want the deadline", err)
	}
	// The zero cursor (nothing to wait for) is passed at once.
	if err := projections.WaitFor(t.Context(), pool, "customers", eventstore.Cursor{}); err != nil {
		t.Fatal(err)
	}
	r := startRunner(t, pool, 0)
	waitFor(t, pool, h)
	if cp := checkpoint(t, pool); cp.Less(h) {
		t.Errorf("WaitFor(%s) returned with the checkpoint at %s", h, cp)
	}
	r.stop()
	r.noErrors()
}

func TestByName(t *testing.T) {
	for _, p := range projections.All() {
		got, err := projections.ByName(p.Name())
		if err != nil || got.Name() != p.Name() || got.Table() != p.Table() {
			t.Errorf("ByName(%q) = %v, %v", p.Name(), got, err)
		}
	}
	if names := projections.All()[0].Name() + " " + projections.All()[1].Name(); names != "quotes customers" {
		t.Errorf("All() = %s, want quotes then customers", names)
	}
	if projections.All()[0].Async() || !projections.All()[1].Async() {
		t.Error("quotes should be inline and customers asynchronous")
	}
	if _, err := projections.ByName("invoices"); err == nil {
		t.Error("ByName of an unknown projection succeeded")
	}
}

// A leader whose connection is lost (here: its backend terminated) starts
// again by itself and goes on from its checkpoint, applying every event
// once.
func TestRunnerRecoversFromALostConnection(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	importFixture(t, pool)
	r := startRunner(t, pool, 0)
	waitCaughtUp(t, pool)
	wantApplied(t, pool, "before the loss", r)
	pid, holders := holderOfLock(t, pool)
	if holders != 1 {
		t.Fatalf("%d sessions hold the projector's lock", holders)
	}
	var ok bool
	if err := pool.QueryRow(t.Context(), `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate the leader's backend %d: %v, %v", pid, ok, err)
	}
	ids := someCustomers(t, pool, "cust-after", 4, true)
	waitCaughtUp(t, pool)
	wantApplied(t, pool, "after the loss", r)
	if newPid, holders := holderOfLock(t, pool); holders != 1 || newPid == pid {
		t.Errorf("after the loss: %d holders, pid %d (was %d)", holders, newPid, pid)
	}
	svc := newApp(pool)
	for _, id := range ids {
		wantCustomerView(t, pool, svc, alex, id)
	}
	r.stop()
	if len(r.log.errors()) == 0 {
		t.Error("the runner logged nothing about its lost connection")
	}
}

// A submitted order shows in the customer's row as soon as the command
// returns, whatever the projector's lag: Inline writes it in the command's
// transaction, from the customer's whole stream. The projector, running
// later, leaves the row as it is.
func TestSubmitShowsInTheCustomerRowAtOnce(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	ctx := t.Context()
	importFixture(t, pool)
	ids := someCustomers(t, pool, "cust-i", 3, false)
	svc := newApp(pool)
	views := projections.NewQueries(pool)

	// No runner yet: imported customers have no row.
	if _, err := views.Customer(ctx, alex.MSPID, ids[0]); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("an imported customer before any runner: err = %v, want not_found", err)
	}
	submitted(t, svc, ids[0], 750)
	d, err := views.Customer(ctx, alex.MSPID, ids[0])
	if err != nil || d.Version != 2 || d.TotalUsers != 750 {
		t.Fatalf("right after the submit: %+v, %v; want version 2 with 750 users", d, err)
	}
	wantCustomerView(t, pool, svc, alex, ids[0])
	before := snapshot(t, pool, "customer_views", "customer_id")

	r := startRunner(t, pool, 2)
	waitCaughtUp(t, pool)
	wantApplied(t, pool, "the runner", r)
	for _, id := range append(ids, "cust-contoso", "cust-adatum", "cust-1st-street") {
		wantCustomerView(t, pool, svc, alex, id)
	}
	after := snapshot(t, pool, "customer_views", "customer_id")
	if !slices.Contains(after, before[0]) || len(before) != 1 {
		t.Errorf("the runner rewrote the row the submit wrote:\n before %v\n after  %v", before, after)
	}

	// With the runner going, a second order shows at once too.
	submitted(t, svc, ids[0], 800)
	if d, err := views.Customer(ctx, alex.MSPID, ids[0]); err != nil || d.Version != 3 || d.TotalUsers != 800 {
		t.Errorf("right after the second submit: %+v, %v; want version 3 with 800 users", d, err)
	}
	waitCaughtUp(t, pool)
	wantApplied(t, pool, "the runner", r)
	wantCustomerView(t, pool, svc, alex, ids[0])
	r.stop()
	r.noErrors()
}
