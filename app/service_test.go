package app_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
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
)

var (
	alex = domain.Actor{MSPID: "msp-northwind", UserID: "u-alex"}
	kim  = domain.Actor{MSPID: "msp-tailspin", UserID: "u-kim"}
	now  = time.Date(2026, 11, 25, 9, 30, 0, 0, time.UTC)
)

type testBundle struct {
	pool     *pgxpool.Pool
	svc      *app.Service
	customer string // a fresh copy of Contoso Ltd: 682 EMAIL-SEC @3.25, 682 ARCHIVE @1.65
}

// setup gives each test its own copy of Contoso, imported with the
// fixture's MSPs and catalog, so tests can run in parallel and submit orders
// without moving each other's baselines.
func setup(t *testing.T, opts ...app.Option) testBundle {
	t.Helper()
	return setupIn(t, "app", opts...)
}

// setupIn is setup in the database upsell_test_<db>, for a test that
// changes what the others share (the catalog).
func setupIn(t *testing.T, db string, opts ...app.Option) testBundle {
	t.Helper()
	pool := testdb.Pool(t, db)
	raw, err := os.ReadFile("../fixtures/import-example.json")
	if err != nil {
		t.Fatal(err)
	}
	f, err := importer.Parse(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	id := "cust-contoso-" + uuid.NewString()[:8]
	f.Customers = f.Customers[:1]
	f.Customers[0].ID = id
	if _, err := importer.Import(context.Background(), eventstore.New(pool), f, domain.FixedClock{T: now}); err != nil {
		t.Fatal(err)
	}
	opts = append([]app.Option{app.WithClock(domain.FixedClock{T: now})}, opts...)
	return testBundle{pool: pool, svc: app.New(pool, opts...), customer: id}
}

func (b testBundle) open(t *testing.T) uuid.UUID {
	t.Helper()
	res, err := b.svc.OpenChangeQuote(context.Background(), app.Meta{Actor: alex}, b.customer)
	if err != nil {
		t.Fatal(err)
	}
	return res.QuoteID
}

func (b testBundle) stream(t *testing.T, id string) []eventstore.Event {
	t.Helper()
	evs, err := b.svc.Store().Load(context.Background(), id, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// must fails the test when a command fails: must(t)(svc.Command(...)).
func must(t *testing.T) func(app.Result, error) {
	return func(_ app.Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestSeedStory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m := app.Meta{Actor: alex, CorrelationID: "req-42"}

	opened, err := b.svc.OpenChangeQuote(ctx, m, b.customer)
	if err != nil {
		t.Fatal(err)
	}
	id := opened.QuoteID
	res, err := b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 700)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Quote.Preview()
	if got := p.ChangesToExistingProducts; len(got) != 2 ||
		got[0].Quantity != -682 || got[0].UnitPrice.String() != "3.25" || got[0].MonthlyPayment.String() != "-2216.50" ||
		got[1].Quantity != 700 || got[1].UnitPrice.String() != "3.20" || got[1].MonthlyPayment.String() != "2240.00" {
		t.Fatalf("changes to existing products = %+v", got)
	}
	must(t)(b.svc.AddProduct(ctx, m, id, "AWARENESS", "12 Month", 700))
	must(t)(b.svc.SaveQuote(ctx, m, id))
	res, err = b.svc.ReviewOrder(ctx, m, id)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := res.Quote.Summary()
	if err != nil {
		t.Fatal(err)
	}
	if sum.TotalUsers != 700 || sum.PriorMonthlyTotal.String() != "3341.80" || sum.NewMonthlyTotal.String() != "4240.30" {
		t.Fatalf("summary totals: users %d, prior %s, new %s", sum.TotalUsers, sum.PriorMonthlyTotal, sum.NewMonthlyTotal)
	}
	must(t)(b.svc.Acknowledge(ctx, m, id, true, true))
	res, err = b.svc.SubmitOrder(ctx, m, id)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 7 || res.Quote.Status() != domain.StatusSubmitted {
		t.Fatalf("after submit: version %d status %s", res.Version, res.Quote.Status())
	}
	// Submit appends to the quote and the customer in one transaction.
	if len(res.Events) != 2 || res.Events[0].Type != "OrderSubmitted" || res.Events[1].Type != "SubscriptionAmended" ||
		res.Events[0].TransactionID != res.Events[1].TransactionID {
		t.Fatalf("submit events = %+v", res.Events)
	}

	quote := b.stream(t, id.String())
	wantTypes := []string{"ChangeQuoteOpened", "SeatsChanged", "ProductAdded", "QuoteSaved", "OrderReviewed", "AcknowledgementsGiven", "OrderSubmitted"}
	if len(quote) != len(wantTypes) {
		t.Fatalf("quote stream has %d events, want %d", len(quote), len(wantTypes))
	}
	for i, e := range quote {
		if e.Type != wantTypes[i] || e.Version != int64(i+1) {
			t.Errorf("event %d = %s v%d, want %s v%d", i, e.Type, e.Version, wantTypes[i], i+1)
		}
		if e.Metadata.MSPID != alex.MSPID || e.Metadata.UserID != alex.UserID || e.Metadata.CorrelationID != "req-42" || e.Metadata.CausationID == "" {
			t.Errorf("event %d metadata = %+v", i, e.Metadata)
		}
	}

	c, err := b.svc.LoadCustomer(ctx, alex, b.customer)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != 2 || c.MonthlyTotal().String() != "4240.30" || c.TotalUsers() != 700 {
		t.Fatalf("customer after submit: version %d total %s users %d", c.Version(), c.MonthlyTotal(), c.TotalUsers())
	}
	// A new quote starts from 700 seats.
	next, err := b.svc.OpenChangeQuote(ctx, m, b.customer)
	if err != nil {
		t.Fatal(err)
	}
	cur := next.Quote.Preview().CurrentProducts
	if cur[0].ProductCode != "EMAIL-SEC" || cur[0].Seats != 700 || cur[0].UnitPrice.String() != "3.20" {
		t.Fatalf("next quote baseline = %+v", cur)
	}
}

func TestRefusedCommandAppendsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id := b.open(t)
	m := app.Meta{Actor: alex}
	_, err := b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 681)
	if !errors.Is(err, domain.ErrSeatsDecrease) {
		t.Fatalf("err = %v, want seats_decrease", err)
	}
	_, err = b.svc.ReviewOrder(ctx, m, id)
	if !errors.Is(err, domain.ErrNothingToReview) {
		t.Fatalf("err = %v, want nothing_to_review", err)
	}
	_, err = b.svc.AddProduct(ctx, m, id, "NOPE", "12 Month", 5)
	if !errors.Is(err, domain.ErrUnknownProduct) {
		t.Fatalf("err = %v, want unknown_product", err)
	}
	if n := len(b.stream(t, id.String())); n != 1 {
		t.Fatalf("quote stream has %d events after refusals, want 1", n)
	}
	// A total equal to the current one is no change: nothing appended.
	res, err := b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 682)
	if err != nil || len(res.Events) != 0 || res.Version != 1 {
		t.Fatalf("no-op change: %+v, %v", res, err)
	}
}

func TestOtherMSPSeesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id := b.open(t)
	m := app.Meta{Actor: kim}
	calls := map[string]func() error{
		"open":   func() error { _, err := b.svc.OpenChangeQuote(ctx, m, b.customer); return err },
		"load":   func() error { _, err := b.svc.LoadQuote(ctx, kim, id, eventstore.LoadOptions{}); return err },
		"seats":  func() error { _, err := b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 700); return err },
		"add":    func() error { _, err := b.svc.AddProduct(ctx, m, id, "AWARENESS", "12 Month", 1); return err },
		"cancel": func() error { _, err := b.svc.CancelQuote(ctx, m, id); return err },
		"submit": func() error { _, err := b.svc.SubmitOrder(ctx, m, id); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("%s as another MSP: err = %v, want not_found", name, err)
		}
	}
	if _, err := b.svc.LoadQuote(ctx, alex, uuid.New(), eventstore.LoadOptions{}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("unknown quote: err = %v, want not_found", err)
	}
	// A customer id is not a quote id, even when the stream exists.
	if _, err := b.svc.LoadCustomer(ctx, alex, id.String()); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("quote id as customer: err = %v, want not_found", err)
	}
	if n := len(b.stream(t, id.String())); n != 1 {
		t.Fatalf("quote stream has %d events, want 1", n)
	}
}

func TestExpectedVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id := b.open(t)
	stale := int64(0)
	_, err := b.svc.ChangeSeats(ctx, app.Meta{Actor: alex, ExpectedVersion: &stale}, id, "EMAIL-SEC", 700)
	if !errors.Is(err, app.ErrPreconditionFailed) {
		t.Fatalf("err = %v, want ErrPreconditionFailed", err)
	}
	if n := len(b.stream(t, id.String())); n != 1 {
		t.Fatalf("quote stream has %d events, want 1", n)
	}
	current := int64(1)
	res, err := b.svc.ChangeSeats(ctx, app.Meta{Actor: alex, ExpectedVersion: &current}, id, "EMAIL-SEC", 700)
	if err != nil || res.Version != 2 {
		t.Fatalf("at the expected version: %v, version %d", err, res.Version)
	}
}

// Concurrent commands without an expected version all land: a conflict
// re-runs the decision on the winner's state.
func TestConflictRetries(t *testing.T) {
	t.Parallel()
	b := setup(t, app.WithMaxRetries(50))
	ctx := context.Background()
	id := b.open(t)
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.svc.ChangeSeats(ctx, app.Meta{Actor: alex}, id, "EMAIL-SEC", 700+i+1)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent ChangeSeats: %v", err)
		}
	}
	evs := b.stream(t, id.String())
	if len(evs) != writers+1 {
		t.Fatalf("quote stream has %d events, want %d", len(evs), writers+1)
	}
	q, err := b.svc.LoadQuote(ctx, alex, id, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last, err := domainEvent(evs[len(evs)-1])
	if err != nil {
		t.Fatal(err)
	}
	if got := q.Preview().ChangesToExistingProducts[1].Quantity; got != last.(domain.SeatsChanged).NewSeats {
		t.Fatalf("state has %d seats, the last event says %d", got, last.(domain.SeatsChanged).NewSeats)
	}
}

func domainEvent(e eventstore.Event) (domain.Event, error) {
	evs, err := app.DecodeEvents([]eventstore.Event{e})
	if err != nil {
		return nil, err
	}
	return evs[0], nil
}

func reviewedAndAcknowledged(t *testing.T, b testBundle) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	m := app.Meta{Actor: alex}
	id := b.open(t)
	must(t)(b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 700))
	must(t)(b.svc.ReviewOrder(ctx, m, id))
	must(t)(b.svc.Acknowledge(ctx, m, id, true, true))
	return id
}

func TestSecondSubmitOnOneCustomerIsBaselineChanged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	first, second := reviewedAndAcknowledged(t, b), reviewedAndAcknowledged(t, b)
	must(t)(b.svc.SubmitOrder(ctx, app.Meta{Actor: alex}, first))
	_, err := b.svc.SubmitOrder(ctx, app.Meta{Actor: alex}, second)
	if !errors.Is(err, domain.ErrBaselineChanged) {
		t.Fatalf("second submit: err = %v, want baseline_changed", err)
	}
	if n := len(b.stream(t, second.String())); n != 4 {
		t.Fatalf("second quote has %d events, want 4 (nothing appended)", n)
	}
	if n := len(b.stream(t, b.customer)); n != 2 {
		t.Fatalf("customer has %d events, want 2", n)
	}
}

// Two orders for one customer submitted at once: exactly one wins, in both
// streams or neither; the other is baseline_changed.
func TestConcurrentSubmitsOneWins(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ids := []uuid.UUID{reviewedAndAcknowledged(t, b), reviewedAndAcknowledged(t, b), reviewedAndAcknowledged(t, b)}
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.svc.SubmitOrder(ctx, app.Meta{Actor: alex}, id)
		}()
	}
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
			if n := len(b.stream(t, ids[i].String())); n != 5 {
				t.Errorf("winning quote has %d events, want 5", n)
			}
		case errors.Is(err, domain.ErrBaselineChanged):
			if n := len(b.stream(t, ids[i].String())); n != 4 {
				t.Errorf("losing quote has %d events, want 4", n)
			}
		default:
			t.Errorf("submit %d: unexpected error %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d submits won, want exactly 1", wins)
	}
	if n := len(b.stream(t, b.customer)); n != 2 {
		t.Fatalf("customer has %d events, want 2", n)
	}
}

// A TxHook commits with the events or makes them roll back.
func TestTxHookIsAtomicWithTheEvents(t *testing.T) {
	t.Parallel()
	boom := errors.New("read model refused")
	var seen []string
	fail := false
	var mu sync.Mutex
	hook := func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			seen = append(seen, e.Type)
		}
		if fail {
			return boom
		}
		return nil
	}
	b := setup(t, app.WithTxHook(hook))
	ctx := context.Background()
	id := b.open(t)
	mu.Lock()
	fail = true
	mu.Unlock()
	if _, err := b.svc.ChangeSeats(ctx, app.Meta{Actor: alex}, id, "EMAIL-SEC", 700); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the hook's error", err)
	}
	if n := len(b.stream(t, id.String())); n != 1 {
		t.Fatalf("quote has %d events after a failed hook, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "ChangeQuoteOpened,SeatsChanged" {
		t.Fatalf("hook saw %v", seen)
	}
}

func TestLoadQuoteAsOfVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id := b.open(t)
	must(t)(b.svc.ChangeSeats(ctx, app.Meta{Actor: alex}, id, "EMAIL-SEC", 700))
	must(t)(b.svc.ChangeSeats(ctx, app.Meta{Actor: alex}, id, "EMAIL-SEC", 750))
	q, err := b.svc.LoadQuote(ctx, alex, id, eventstore.LoadOptions{UpToVersion: 2})
	if err != nil {
		t.Fatal(err)
	}
	p := q.Preview()
	if p.Version != 2 || p.ChangesToExistingProducts[1].Quantity != 700 || p.NewMonthlyTotal.String() != "3365.30" {
		t.Fatalf("as of version 2: version %d, %+v, total %s", p.Version, p.ChangesToExistingProducts, p.NewMonthlyTotal)
	}
}

// Without retries, concurrent writers lose with a version conflict that
// says so; the winners' events are all there and nothing else is. With the
// same start, TestConflictRetries shows the retries turn those losses into
// successes.
func TestConflictWithoutRetriesIsReturned(t *testing.T) {
	t.Parallel()
	b := setup(t, app.WithMaxRetries(0))
	ctx := context.Background()
	id := b.open(t)
	const writers = 16
	start := make(chan struct{})
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			_, err := b.svc.ChangeSeats(ctx, app.Meta{Actor: alex}, id, "EMAIL-SEC", 700+i+1)
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	won, lost := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, eventstore.ErrVersionConflict) && strings.Contains(err.Error(), "gave up after 1 attempts"):
			lost++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if lost == 0 {
		t.Fatalf("%d writers released at once on one quote, none lost: the conflict path was not exercised", writers)
	}
	if n := len(b.stream(t, id.String())); n != won+1 {
		t.Fatalf("quote has %d events, want 1 + %d winners", n, won)
	}
}
