package domain_test

import (
	"reflect"
	"testing"

	"github.com/upsell-dev/upsell/domain"
)

// A clone is the quote as stored, and commands on the clone leave the
// original as it was: the edited lines (the changed map, the added slice,
// edited in place) are the clone's own.
func TestCloneSharesNothingACommandChanges(t *testing.T) {
	cat := fixtureCatalog(t)
	q := openQuote(t, contoso(t), quoteID)
	must(t, q.ChangeSeats(cat, emailSec, 700))
	must(t, q.AddProduct(cat, awareness, month12, 100))
	stored, err := domain.LoadChangeQuote(roundTrip(t, q.Changes()))
	must(t, err)

	orig := stored.Clone()
	if len(orig.Changes()) != 0 || orig.ExpectedVersion() != stored.Version() || orig.Version() != stored.Version() {
		t.Fatalf("clone: %d changes, expected version %d, version %d; want none, %d, %d",
			len(orig.Changes()), orig.ExpectedVersion(), orig.Version(), stored.Version(), stored.Version())
	}
	want := orig.Preview()

	c := orig.Clone()
	must(t, c.ChangeSeats(cat, emailSec, 682)) // back to the baseline: deleted from the map
	must(t, c.ChangeSeats(cat, archive, 800))  // into the map
	must(t, c.ChangeSeats(cat, awareness, 1200))
	must(t, c.RemoveProduct(awareness))
	if reflect.DeepEqual(c.Preview(), want) {
		t.Fatal("the commands changed nothing: the test proves nothing")
	}
	if got := orig.Preview(); !reflect.DeepEqual(got, want) || orig.Version() != stored.Version() {
		t.Errorf("commands on a clone changed the original:\n got %+v\nwant %+v", got, want)
	}

	// Edited in place without removing: the added line's seats.
	c = orig.Clone()
	must(t, c.ChangeSeats(cat, awareness, 1500))
	if got := orig.Preview(); !reflect.DeepEqual(got, want) {
		t.Errorf("a seat change on the clone's added line changed the original:\n got %+v\nwant %+v", got, want)
	}
	// And the clone carries on as the original would.
	must(t, stored.ChangeSeats(cat, awareness, 1500))
	if !reflect.DeepEqual(c.Preview(), stored.Preview()) || c.Version() != stored.Version() {
		t.Errorf("the clone after a command differs from the original after it:\n got %+v\nwant %+v", c.Preview(), stored.Preview())
	}
}
