package projections

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// The rows' JSON columns, written by the views' AppendJSON into a buffer
// shared by many rows, are what json.Marshal makes of the views, and a row
// made in a shared buffer is the row made on its own.
func TestRowJSONIsEncodingJSONs(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	cat, err := domain.NewCatalog([]domain.Product{{
		Code: "EMAIL-SEC", Name: "Email <Security> & \"Gateway\"", PerUser: true, Currency: "USD", TermTypes: []string{"12 Month"},
		Tiers: []domain.Tier{{TermType: "12 Month", MinSeats: 1, UnitPrice: domain.MustMoney("3.25")},
			{TermType: "12 Month", MinSeats: 700, UnitPrice: domain.MustMoney("3.20")}},
	}, {
		Code: "DMARC", Name: "DMARC Analyzer", PerUser: false, Currency: "USD", TermTypes: []string{"12 Month"},
		Tiers: []domain.Tier{{TermType: "12 Month", MinSeats: 1, UnitPrice: domain.MustMoney("45")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := domain.OnboardCustomer("cust-é", "msp-1", "Émile & Söhne", "USD", []domain.Line{
		{ProductCode: "EMAIL-SEC", ProductName: "Email <Security> & \"Gateway\"", TermType: "12 Month", PerUser: true, Seats: 682, UnitPrice: domain.MustMoney("3.25")},
	}, at)
	if err != nil {
		t.Fatal(err)
	}
	actor := domain.Actor{MSPID: "msp-1", UserID: "u-1"}
	q, err := domain.OpenChangeQuote(uuid.New(), c, "MSP \u2028 One", actor, at)
	if err != nil {
		t.Fatal(err)
	}
	var quotes []*domain.ChangeQuote
	snapshot := func() {
		events := q.Changes()
		again, err := domain.ReplayChangeQuote(nil, events)
		if err != nil {
			t.Fatal(err)
		}
		quotes = append(quotes, again)
	}
	snapshot()
	for _, step := range []func() error{
		func() error { return q.ChangeSeats(cat, "EMAIL-SEC", 700) },
		func() error { return q.AddProduct(cat, "DMARC", "12 Month", 2) },
		func() error { return q.Review(at.Add(time.Minute)) },
		func() error { return q.Acknowledge(true, true, actor, at.Add(2*time.Minute)) },
		func() error { return q.Submit(c, actor, at.Add(3*time.Minute)) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		snapshot()
	}

	var shared []byte
	for _, q := range quotes {
		last := eventstore.Event{StreamID: q.ID().String(), Version: q.Version(), RecordedAt: at}
		row, err := quoteRows.rowInto(&shared, q, last)
		if err != nil {
			t.Fatal(err)
		}
		alone, err := quoteRows.row(q, last)
		if err != nil {
			t.Fatal(err)
		}
		preview, _ := json.Marshal(q.Preview())
		var summary []byte
		if s, err := q.Summary(); err == nil {
			summary, _ = json.Marshal(s)
		} else if !errors.Is(err, domain.ErrNotReviewed) {
			t.Fatal(err)
		}
		for _, r := range [][]any{row, alone} {
			if got := r[7].([]byte); string(got) != string(preview) {
				t.Errorf("v%d preview:\n got  %s\n want %s", q.Version(), got, preview)
			}
			if got := r[8].([]byte); string(got) != string(summary) || (got == nil) != (summary == nil) {
				t.Errorf("v%d summary:\n got  %s\n want %s", q.Version(), got, summary)
			}
		}
	}
	shared = shared[:0]
	row, err := customerRows.rowInto(&shared, c, eventstore.Event{})
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := json.Marshal(c.PricedLines()); string(row[9].([]byte)) != string(want) {
		t.Errorf("customer lines:\n got  %s\n want %s", row[9], want)
	}
}
