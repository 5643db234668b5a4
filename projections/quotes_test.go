package projections_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/projections"
)

// After every command, the quote's row is what the domain computes from the
// quote's events: inline, in the command's own transaction, so a read right
// after the command shows it.
func TestInlineQuoteViewFollowsEveryCommand(t *testing.T) {
	t.Parallel()
	pool := sharedPool(t)
	ctx := t.Context()
	customer := "cust-" + token()
	importCustomers(t, pool, customerLike(t, customer, alex.MSPID, "Inline "+customer))
	svc := newApp(pool)
	views := projections.NewQueries(pool)
	m := app.Meta{Actor: alex}

	opened := must(t)(svc.OpenChangeQuote(ctx, m, customer))
	id := opened.QuoteID
	wantQuoteView(t, pool, svc, alex, id)
	if _, v, err := views.Summary(ctx, alex.MSPID, id); !errors.Is(err, domain.ErrNotReviewed) || v != 1 {
		t.Fatalf("Summary of a new quote: version %d, err %v; want version 1, not_reviewed", v, err)
	}

	steps := []struct {
		name       string
		run        func() (app.Result, error)
		wantStatus domain.Status
		reviewed   bool
	}{
		{"add product", func() (app.Result, error) { return svc.AddProduct(ctx, m, id, "AWARENESS", "12 Month", 700) }, domain.StatusDraft, false},
		{"change seats", func() (app.Result, error) { return svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 700) }, domain.StatusDraft, false},
		{"save", func() (app.Result, error) { return svc.SaveQuote(ctx, m, id) }, domain.StatusSaved, false},
		{"review", func() (app.Result, error) { return svc.ReviewOrder(ctx, m, id) }, domain.StatusReviewed, true},
		{"save a reviewed quote", func() (app.Result, error) { return svc.SaveQuote(ctx, m, id) }, domain.StatusReviewed, true},
		{"edit after review", func() (app.Result, error) { return svc.ChangeSeats(ctx, m, id, "ARCHIVE", 720) }, domain.StatusDraft, false},
		{"review again", func() (app.Result, error) { return svc.ReviewOrder(ctx, m, id) }, domain.StatusReviewed, true},
		{"acknowledge", func() (app.Result, error) { return svc.Acknowledge(ctx, m, id, true, true) }, domain.StatusReviewed, true},
		{"submit", func() (app.Result, error) { return svc.SubmitOrder(ctx, m, id) }, domain.StatusSubmitted, true},
	}
	for _, s := range steps {
		res, err := s.run()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if len(res.Events) == 0 {
			t.Fatalf("%s appended nothing", s.name)
		}
		wantQuoteView(t, pool, svc, alex, id)
		p, err := views.Preview(ctx, alex.MSPID, id)
		if err != nil {
			t.Fatal(err)
		}
		if p.Version != res.Version || p.Status != s.wantStatus {
			t.Errorf("after %s: preview at v%d %s, want v%d %s", s.name, p.Version, p.Status, res.Version, s.wantStatus)
		}
		sum, v, err := views.Summary(ctx, alex.MSPID, id)
		switch {
		case v != res.Version:
			t.Errorf("after %s: Summary says version %d, want %d", s.name, v, res.Version)
		case s.reviewed && (err != nil || sum.Version != res.Version || sum.Status != s.wantStatus):
			t.Errorf("after %s: summary v%d %s, err %v; want v%d %s", s.name, sum.Version, sum.Status, err, res.Version, s.wantStatus)
		case !s.reviewed && !errors.Is(err, domain.ErrNotReviewed):
			t.Errorf("after %s: Summary err = %v, want not_reviewed", s.name, err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	// The row's time is the time of the quote's last event.
	stored, err := svc.QuoteHistory(ctx, alex, id, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	items, err := views.Quotes(ctx, alex.MSPID, customer, nil)
	if err != nil || len(items) != 1 {
		t.Fatalf("Quotes: %d items, err %v; want 1", len(items), err)
	}
	if want := stored[len(stored)-1].RecordedAt; !items[0].UpdatedAt.Equal(want) {
		t.Errorf("updated_at = %s, want the last event's recorded_at %s", items[0].UpdatedAt, want)
	}

	// A second quote, cancelled.
	second := must(t)(svc.OpenChangeQuote(ctx, m, customer)).QuoteID
	wantQuoteView(t, pool, svc, alex, second)
	must(t)(svc.ChangeSeats(ctx, m, second, "EMAIL-SEC", 800))
	wantQuoteView(t, pool, svc, alex, second)
	must(t)(svc.CancelQuote(ctx, m, second))
	wantQuoteView(t, pool, svc, alex, second)

	// A quote cancelled after its review keeps its summary, as the domain
	// does.
	third := must(t)(svc.OpenChangeQuote(ctx, m, customer)).QuoteID
	must(t)(svc.AddProduct(ctx, m, third, "DMARC", "12 Month", 2))
	must(t)(svc.ReviewOrder(ctx, m, third))
	wantQuoteView(t, pool, svc, alex, third)
	must(t)(svc.CancelQuote(ctx, m, third))
	wantQuoteView(t, pool, svc, alex, third)

	// The list: most recently changed first, filtered by status.
	all, err := views.Quotes(ctx, alex.MSPID, customer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].QuoteID != third || all[1].QuoteID != second || all[2].QuoteID != id {
		t.Fatalf("Quotes = %+v, want the two cancelled quotes, latest first, then the submitted one", all)
	}
	for _, st := range domain.Statuses {
		got, err := views.Quotes(ctx, alex.MSPID, customer, &st)
		if err != nil {
			t.Fatal(err)
		}
		want := map[domain.Status]int{domain.StatusSubmitted: 1, domain.StatusCancelled: 2}[st]
		if len(got) != want || (want > 0 && got[0].Status != st) {
			t.Errorf("Quotes with status %s = %+v, want %d", st, got, want)
		}
	}
}

// Another MSP's quote or customer is not found, nor is an unknown one.
func TestQuoteViewsAreScopedToTheMSP(t *testing.T) {
	t.Parallel()
	pool := sharedPool(t)
	ctx := t.Context()
	customer := "cust-" + token()
	importCustomers(t, pool, customerLike(t, customer, alex.MSPID, "Scoped "+customer))
	svc := newApp(pool)
	views := projections.NewQueries(pool)
	id := must(t)(svc.OpenChangeQuote(ctx, app.Meta{Actor: alex}, customer)).QuoteID
	must(t)(svc.ChangeSeats(ctx, app.Meta{Actor: alex}, id, "EMAIL-SEC", 700))
	must(t)(svc.ReviewOrder(ctx, app.Meta{Actor: alex}, id))
	wantQuoteView(t, pool, svc, alex, id)

	for _, c := range []struct {
		name  string
		msp   string
		quote uuid.UUID
	}{
		{"another MSP's quote", kim.MSPID, id},
		{"an unknown quote", alex.MSPID, uuid.New()},
		{"a customer id's uuid", alex.MSPID, uuid.NewSHA1(uuid.Nil, []byte(customer))},
	} {
		if _, err := views.Preview(ctx, c.msp, c.quote); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("Preview of %s: err = %v, want not_found", c.name, err)
		}
		if _, _, err := views.Summary(ctx, c.msp, c.quote); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("Summary of %s: err = %v, want not_found", c.name, err)
		}
	}
	if _, err := views.Quotes(ctx, kim.MSPID, customer, nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Quotes of another MSP's customer: err = %v, want not_found", err)
	}
	if _, err := views.Quotes(ctx, alex.MSPID, "cust-"+token(), nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Quotes of an unknown customer: err = %v, want not_found", err)
	}
	// A quote id is a stream id but not a customer's.
	if _, err := views.Quotes(ctx, alex.MSPID, id.String(), nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Quotes of a quote id: err = %v, want not_found", err)
	}
	// A customer with no quotes has an empty list, not an error.
	other := "cust-" + token()
	importCustomers(t, pool, customerLike(t, other, alex.MSPID, "No quotes "+other))
	if items, err := views.Quotes(ctx, alex.MSPID, other, nil); err != nil || len(items) != 0 {
		t.Errorf("Quotes of a customer with none: %+v, %v", items, err)
	}
}

// The row commits with the events or not at all: a hook after Inline that
// fails rolls both back.
func TestInlineRowRollsBackWithTheEvents(t *testing.T) {
	t.Parallel()
	pool := sharedPool(t)
	ctx := t.Context()
	customer := "cust-" + token()
	importCustomers(t, pool, customerLike(t, customer, alex.MSPID, "Rollback "+customer))
	boom := errors.New("refused after the projection")
	fail := false
	svc := newApp(pool, app.WithTxHook(func(context.Context, pgx.Tx, []eventstore.Event) error {
		if fail {
			return boom
		}
		return nil
	}))
	id := must(t)(svc.OpenChangeQuote(ctx, app.Meta{Actor: alex}, customer)).QuoteID
	before := snapshotQuote(t, pool, id)
	fail = true
	if _, err := svc.ChangeSeats(ctx, app.Meta{Actor: alex}, id, "EMAIL-SEC", 700); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the hook's", err)
	}
	if after := snapshotQuote(t, pool, id); after != before {
		t.Fatalf("the row changed although the command rolled back:\n before %s\n after  %s", before, after)
	}
	fail = false
	wantQuoteView(t, pool, svc, alex, id)
}

func snapshotQuote(t *testing.T, pool interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id uuid.UUID) string {
	t.Helper()
	var s string
	if err := pool.QueryRow(t.Context(), `SELECT to_jsonb(t)::text FROM quote_views t WHERE quote_id = $1`, id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Concurrent commands on one quote: the losers' transactions roll back with
// their rows, the retries write theirs, and the row ends as the events say.
func TestInlineViewUnderConflictingCommands(t *testing.T) {
	t.Parallel()
	pool := sharedPool(t)
	ctx := t.Context()
	customer := "cust-" + token()
	importCustomers(t, pool, customerLike(t, customer, alex.MSPID, "Conflicts "+customer))
	svc := newApp(pool, app.WithMaxRetries(100))
	id := must(t)(svc.OpenChangeQuote(ctx, app.Meta{Actor: alex}, customer)).QuoteID
	const writers = 8
	errs := make(chan error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			_, err := svc.ChangeSeats(ctx, app.Meta{Actor: alex}, id, "EMAIL-SEC", 700+i)
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("ChangeSeats: %v", err)
		}
	}
	wantQuoteView(t, pool, svc, alex, id)
	if p, err := projections.NewQueries(pool).Preview(ctx, alex.MSPID, id); err != nil || p.Version != writers+1 {
		t.Errorf("preview at version %d, %v; want %d", p.Version, err, writers+1)
	}
}
