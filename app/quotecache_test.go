package app_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// A quote kept in memory never hides what another process appended: the
// next command reads it, If-Match is checked against it, and the state
// decided on equals a fresh load's.
func TestKeptQuoteSeesOtherWriters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	other := app.New(b.pool, app.WithClock(domain.FixedClock{T: now})) // another process: its own memory
	m := app.Meta{Actor: alex}
	id := b.open(t)
	must(t)(b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 700)) // b.svc keeps version 2
	must(t)(other.ChangeSeats(ctx, m, id, "ARCHIVE", 800))
	must(t)(other.AddProduct(ctx, m, id, "AWARENESS", "12 Month", 700)) // version 4

	stale := int64(2)
	_, err := b.svc.ChangeSeats(ctx, app.Meta{Actor: alex, ExpectedVersion: &stale}, id, "EMAIL-SEC", 710)
	var pf *app.PreconditionFailedError
	if !errors.As(err, &pf) || pf.Actual != 4 {
		t.Fatalf("If-Match on the kept version: err = %v, want precondition failed at version 4", err)
	}
	res, err := b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 710)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 5 {
		t.Errorf("version %d after the command, want 5", res.Version)
	}
	sameAsTheLog(t, b, res)
	if n := len(res.Quote.Preview().AddedProducts); n != 1 {
		t.Errorf("%d added products, want the one the other process added", n)
	}

	// And again, after a command that changed a line this process had not.
	must(t)(other.ChangeSeats(ctx, m, id, "ARCHIVE", 900))
	res, err = b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 720)
	if err != nil {
		t.Fatal(err)
	}
	sameAsTheLog(t, b, res)
}

// sameAsTheLog checks that a command decided on the quote its stream gives,
// loaded whole by a service that keeps nothing in memory.
func sameAsTheLog(t *testing.T, b testBundle, res app.Result) {
	t.Helper()
	fresh, err := app.New(b.pool, app.WithQuoteCache(0)).LoadQuote(context.Background(), alex, res.QuoteID, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Quote.Preview(), fresh.Preview(); !reflect.DeepEqual(got, want) {
		t.Errorf("decided on\n %+v\nthe log gives\n %+v", got, want)
	}
}

// A decision on the kept quote that refuses, or changes nothing, may come
// from a state the log has moved past: the command is decided again on the
// log's.
func TestKeptQuoteNeverRefusesOnStaleState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	other := app.New(b.pool, app.WithClock(domain.FixedClock{T: now}))
	m := app.Meta{Actor: alex}
	id := b.open(t)
	must(t)(b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 700)) // kept at version 2
	must(t)(other.AddProduct(ctx, m, id, "AWARENESS", "12 Month", 700))
	must(t)(other.ChangeSeats(ctx, m, id, "EMAIL-SEC", 710)) // version 4

	// The kept quote has no AWARENESS to remove: a refusal, on stale state.
	res, err := b.svc.RemoveProduct(ctx, m, id, "AWARENESS")
	if err != nil {
		t.Fatalf("remove a product another process added: %v", err)
	}
	if res.Version != 5 {
		t.Errorf("version %d, want 5", res.Version)
	}
	// The kept quote has EMAIL-SEC at 700 already: a no-op, on stale state.
	must(t)(other.ChangeSeats(ctx, m, id, "EMAIL-SEC", 720)) // version 6
	if res, err = b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 720); err != nil || res.Version != 6 || len(res.Events) != 0 {
		t.Errorf("a seat change to what the log has: version %d, %d events, err %v; want version 6, none, nil", res.Version, len(res.Events), err)
	}
	must(t)(other.ChangeSeats(ctx, m, id, "EMAIL-SEC", 700)) // version 7; b.svc keeps 6 at 720
	res, err = b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 720)
	if err != nil || res.Version != 8 || len(res.Events) != 1 {
		t.Fatalf("seats back to 720: version %d, %d events, err %v; want version 8, one event, nil", res.Version, len(res.Events), err)
	}
	sameAsTheLog(t, b, res)
}

// No event is priced from a kept catalog the products have moved past: the
// append's guard refuses it, and the command reads the catalog again.
func TestKeptCatalogIsGuarded(t *testing.T) {
	t.Parallel()
	b := setupIn(t, "appcatalog")
	ctx := context.Background()
	m := app.Meta{Actor: alex}
	id := b.open(t)
	must(t)(b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 690)) // reads and keeps the catalog
	if _, err := b.pool.Exec(ctx, `UPDATE products SET tiers = (
    SELECT jsonb_agg(CASE WHEN t->>'term_type' = '12 Month' AND (t->>'min_seats')::int = 700
                          THEN jsonb_set(t, '{unit_price}', '"3.10"') ELSE t END)
    FROM jsonb_array_elements(tiers) AS t)
WHERE code = 'EMAIL-SEC'`); err != nil {
		t.Fatal(err)
	}
	res, err := b.svc.ChangeSeats(ctx, m, id, "EMAIL-SEC", 700)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Quote.Preview().ChangesToExistingProducts {
		if c.ProductCode == "EMAIL-SEC" && c.Quantity == 700 && c.UnitPrice.String() != "3.10" {
			t.Errorf("700 seats priced at %s, want the catalog's new 3.10", c.UnitPrice)
		}
	}
	stored := b.stream(t, id.String())
	if last := string(stored[len(stored)-1].Data); !strings.Contains(last, `"3.10"`) {
		t.Errorf("the recorded event is %s, want the price 3.10 in it", last)
	}
}
