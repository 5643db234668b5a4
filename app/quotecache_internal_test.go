package app

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/domain"
)

// len is the number of quotes kept.
func (c *quoteCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func keptQuote(t *testing.T) *domain.ChangeQuote {
	t.Helper()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	lines := []domain.Line{{ProductCode: "P", ProductName: "P", TermType: "12 Month", PerUser: true, Seats: 5, UnitPrice: domain.MustMoney("1.00")}}
	c, err := domain.OnboardCustomer("c", "msp", "C", "USD", lines, at)
	if err != nil {
		t.Fatal(err)
	}
	c, err = domain.LoadCustomer(c.Changes())
	if err != nil {
		t.Fatal(err)
	}
	q, err := domain.OpenChangeQuote(uuid.New(), c, "MSP", domain.Actor{MSPID: "msp", UserID: "u"}, at)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// The cache holds at most its size, keeps the latest version of a quote,
// and hands out clones only.
func TestQuoteCacheBounds(t *testing.T) {
	c := newQuoteCache(3)
	var first *domain.ChangeQuote
	for i := range 10 {
		q := keptQuote(t)
		if i == 0 {
			first = q
		}
		c.put(q)
		if n := c.len(); n > 3 {
			t.Fatalf("after %d puts the cache holds %d quotes, want at most 3", i+1, n)
		}
	}
	c = newQuoteCache(3)
	c.put(first)
	got := c.get(first.ID())
	if got == nil || got == first || got.Version() != first.Version() {
		t.Fatalf("get = %p at version %v, want a clone of %p at version %d", got, got, first, first.Version())
	}
	if c.get(first.ID()) == got {
		t.Error("two gets gave the same quote")
	}
	// An older version does not replace a newer one.
	if err := got.Save(time.Now()); err != nil {
		t.Fatal(err)
	}
	c.put(got)
	c.put(first)
	if v := c.get(first.ID()).Version(); v != first.Version()+1 {
		t.Errorf("kept version %d, want %d", v, first.Version()+1)
	}
	if newQuoteCache(0) != nil || newQuoteCache(0).get(first.ID()) != nil {
		t.Error("a cache of size 0 keeps something")
	}
}
