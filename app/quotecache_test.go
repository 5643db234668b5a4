package app_test

import (
	"context"
	"errors"
	"reflect"
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
