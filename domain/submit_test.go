package domain_test

import (
	"testing"

	"github.com/upsell-dev/upsell/domain"
)

// Billing consumes OrderSubmitted alone, so it carries who acknowledged the
// order and when, beside who submitted it.
func TestOrderSubmittedRecordsTheAcknowledgement(t *testing.T) {
	t.Parallel()
	c := contoso(t)
	q := reviewed(t, c, true)
	must(t, q.Submit(c, alex, tSubmit))
	e := lastEvent[domain.OrderSubmitted](t, q.Changes())
	s, err := q.Summary()
	if err != nil {
		t.Fatal(err)
	}
	if e.AcknowledgedBy != s.Acknowledgements.By || e.AcknowledgedBy == "" || !e.AcknowledgedAt.Equal(s.Acknowledgements.At) || e.SubmittedBy != alex.UserID || !e.SubmittedAt.Equal(tSubmit) {
		t.Fatalf("OrderSubmitted = %+v", e)
	}
}

// A product whose catalog currency changed after the customer subscribed
// cannot be repriced in the new currency.
func TestChangeSeatsRefusesAProductNowPricedInAnotherCurrency(t *testing.T) {
	t.Parallel()
	eur := fixtureCatalog(t).Products()
	for i := range eur {
		eur[i].Currency = "EUR"
	}
	cat, err := domain.NewCatalog(eur)
	if err != nil {
		t.Fatal(err)
	}
	q := openQuote(t, contoso(t), quoteID)
	mustRefuse(t, q, domain.ErrCurrencyMismatch, func() error { return q.ChangeSeats(cat, "EMAIL-SEC", 700) })
}
