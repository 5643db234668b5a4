package audit_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/audit"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

func stored(t *testing.T, events ...domain.Event) []eventstore.Event {
	t.Helper()
	out := make([]eventstore.Event, len(events))
	for i, e := range events {
		typ, schema, data, err := domain.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = eventstore.Event{Type: typ, SchemaVersion: schema, Data: data, Version: int64(i + 1)}
	}
	return out
}

var at = time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)

func line(code, name string, seats int, price string) domain.Line {
	return domain.Line{ProductCode: code, ProductName: name, TermType: "12 Month", PerUser: true, Seats: seats, UnitPrice: domain.MustMoney(price)}
}

// TestDescribeEveryQuoteEvent: every event type of a quote's stream has
// words, which name products by the names the stream gave them.
func TestDescribeEveryQuoteEvent(t *testing.T) {
	t.Parallel()
	m := domain.MustMoney
	events := stored(t,
		domain.ChangeQuoteOpened{QuoteID: uuid.New(), CustomerID: "cust-contoso", CustomerName: "Contoso Ltd", MSPID: "msp-northwind",
			MSPName: "Northwind Managed Services", Currency: "USD", BaselineVersion: 3, OpenedBy: "u-alex", OpenedAt: at,
			Baseline: []domain.Line{line("EMAIL-SEC", "Email Security Cloud Gateway", 682, "3.25"), line("ARCHIVE", "Cloud Archive", 682, "1.65")}},
		domain.SeatsChanged{ProductCode: "EMAIL-SEC", TermType: "12 Month", PriorSeats: 682, PreviousSeats: 682, NewSeats: 700, UnitPrice: m("3.20")},
		domain.ProductAdded{ProductCode: "M365-BP", ProductName: "Microsoft 365 Business Premium", TermType: "Monthly", PerUser: true, Seats: 5, UnitPrice: m("12.50")},
		domain.SeatsChanged{ProductCode: "M365-BP", TermType: "Monthly", PriorSeats: 0, PreviousSeats: 5, NewSeats: 1200, UnitPrice: m("11.00")},
		domain.ProductRemoved{ProductCode: "M365-BP"},
		domain.QuoteSaved{SavedAt: at},
		domain.OrderReviewed{TotalUsers: 700, PriorMonthlyTotal: m("1000.00"), NewMonthlyTotal: m("1200.00"), ReviewedAt: at},
		domain.AcknowledgementsGiven{MSAGovernsOrder: true, AuthorizedToOrder: true, By: "u1", MSPID: "msp-northwind", At: at},
		domain.OrderSubmitted{CustomerID: "cust-contoso", TotalUsers: 700, PriorMonthlyTotal: m("3341.80"), NewMonthlyTotal: m("4240.30"),
			MonthlyDifference: m("898.50"), AcknowledgedBy: "u1", SubmittedBy: "u2", SubmittedAt: at},
		domain.QuoteCancelled{CancelledAt: at},
	)
	want := []string{
		"Change quote opened for Contoso Ltd (customer cust-contoso at version 3) by Northwind Managed Services, user u-alex: 2 lines, monthly total 3,341.80 USD",
		"Seats of Email Security Cloud Gateway (12 Month): 682 → 700 at 3.20 USD a seat",
		"Product added: Microsoft 365 Business Premium (Monthly), 5 seats at 12.50 USD a seat",
		"Seats of Microsoft 365 Business Premium (Monthly): 5 → 1200 at 11.00 USD a seat",
		"Product removed: Microsoft 365 Business Premium (Monthly)",
		"Quote saved",
		"Order reviewed: monthly total 1,000.00 → 1,200.00 USD, 700 users",
		"Acknowledgements given by user u1: the master service provider agreement governs the order; authorized to place it",
		"Order submitted by user u2: monthly total 3,341.80 → 4,240.30 USD (+898.50), 700 users; acknowledged by user u1",
		"Quote cancelled: the quote is closed",
	}
	got := audit.Describe(events)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s:\n got  %q\n want %q", events[i].Type, got[i], want[i])
		}
	}

	// Every type of the contract is here, or is a customer's: a new event
	// type fails this test until it has words.
	described := map[string]bool{"CustomerOnboarded": true, "SubscriptionAmended": true}
	for i, e := range events {
		if got[i] == e.Type {
			t.Errorf("%s has no words", e.Type)
		}
		described[e.Type] = true
	}
	if types := slices.Sorted(maps.Keys(domain.EventTypes())); !slices.Equal(types, slices.Sorted(maps.Keys(described))) {
		t.Errorf("event types of the domain %q, described or a customer's %q", types, slices.Sorted(maps.Keys(described)))
	}
}

func TestDescribeWhatItCannotRead(t *testing.T) {
	t.Parallel()
	events := []eventstore.Event{
		{Type: "QuoteArchived", SchemaVersion: 1, Data: []byte(`{}`)},
		{Type: "SeatsChanged", SchemaVersion: 2, Data: []byte(`{}`)},
		// Before the quote was opened, a product has only its code.
		stored(t, domain.SeatsChanged{ProductCode: "EMAIL-SEC", TermType: "12 Month", PreviousSeats: 1, NewSeats: 2, UnitPrice: domain.MustMoney("3.50")})[0],
	}
	want := []string{
		"QuoteArchived",
		"SeatsChanged (schema version 2, not readable by this version of upsell)",
		"Seats of EMAIL-SEC (12 Month): 1 → 2 at 3.50 a seat",
	}
	if got := audit.Describe(events); !slices.Equal(got, want) {
		t.Errorf("Describe = %q\nwant %q", got, want)
	}
}

func TestAmount(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"0.00": "0.00", "12.50": "12.50", "999.99": "999.99", "1000.00": "1,000.00", "-2216.50": "-2,216.50",
		"123456": "123,456", "1234567.891": "1,234,567.891", "-100": "-100", "100000.00": "100,000.00",
	} {
		if got := audit.Amount(domain.MustMoney(in)); got != want {
			t.Errorf("Amount(%s) = %s, want %s", in, got, want)
		}
	}
	if got := audit.Signed(domain.MustMoney("898.50")); got != "+898.50" {
		t.Errorf("Signed(898.50) = %s", got)
	}
	if got := audit.Signed(domain.MustMoney("-1500.00")); got != "-1,500.00" {
		t.Errorf("Signed(-1500.00) = %s", got)
	}
}

func TestParseAsOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]audit.AsOf{
		"1":                                {Version: 1},
		"42":                               {Version: 42},
		"2026-11-25T13:00:00Z":             {Time: at},
		"2026-11-25T14:00:00+01:00":        {Time: at},
		"2026-11-25T13:00:00.000001Z":      {Time: at.Add(time.Microsecond)},
		"2026-11-25T13:00:00.123456-08:00": {Time: at.Add(8*time.Hour + 123456*time.Microsecond)},
	} {
		got, err := audit.ParseAsOf(in)
		if err != nil || got.Version != want.Version || !got.Time.Equal(want.Time) {
			t.Errorf("ParseAsOf(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1.5", "v3", "2026-11-25", "2026-11-25 13:00:00Z", "yesterday", "99999999999999999999"} {
		if got, err := audit.ParseAsOf(in); err == nil {
			t.Errorf("ParseAsOf(%q) = %+v, want an error", in, got)
		}
	}
}
