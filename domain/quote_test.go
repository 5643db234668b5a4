package domain_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/domain"
)

var (
	tReview = t0.Add(10 * time.Minute)
	tAck    = t0.Add(20 * time.Minute)
	tSubmit = t0.Add(30 * time.Minute)
)

// seedQuote opens a quote on c and makes the seed story's two changes:
// EMAIL-SEC raised to 700 seats, AWARENESS added with 700 seats.
func seedQuote(t testing.TB, c *domain.Customer, id uuid.UUID) *domain.ChangeQuote {
	t.Helper()
	cat := fixtureCatalog(t)
	q := openQuote(t, c, id)
	must(t, q.ChangeSeats(cat, emailSec, 700))
	must(t, q.AddProduct(cat, awareness, month12, 700))
	return q
}

// reviewed is the seed quote, reviewed (and acknowledged when ack is set).
func reviewed(t testing.TB, c *domain.Customer, ack bool) *domain.ChangeQuote {
	t.Helper()
	q := seedQuote(t, c, quoteID)
	must(t, q.Review(tReview))
	if ack {
		must(t, q.Acknowledge(true, true, sam, tAck))
	}
	return q
}

// submitSeed runs the seed story to submission on c.
func submitSeed(t testing.TB, c *domain.Customer) *domain.ChangeQuote {
	t.Helper()
	q := reviewed(t, c, true)
	must(t, q.Submit(c, alex, tSubmit))
	return q
}

func TestSeedStory(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	c := contoso(t)
	q := openQuote(t, c, quoteID)

	// Opened: the baseline as it is.
	if q.Status() != domain.StatusDraft || q.Version() != 1 || q.ExpectedVersion() != 0 || q.BaselineVersion() != 1 {
		t.Fatalf("opened: status %s, version %d, expected %d, baseline %d", q.Status(), q.Version(), q.ExpectedVersion(), q.BaselineVersion())
	}
	if q.ID() != quoteID || q.CustomerID() != "cust-contoso" || q.MSPID() != "msp-northwind" || q.Currency() != "USD" {
		t.Fatalf("opened: %s %s %s %s", q.ID(), q.CustomerID(), q.MSPID(), q.Currency())
	}
	opened := lastEvent[domain.ChangeQuoteOpened](t, q.Changes())
	if opened.QuoteID != quoteID || opened.CustomerID != "cust-contoso" || opened.CustomerName != "Contoso Ltd" ||
		opened.MSPID != "msp-northwind" || opened.MSPName != mspName || opened.Currency != "USD" ||
		opened.BaselineVersion != 1 || opened.OpenedBy != "u-alex" || !opened.OpenedAt.Equal(t0) {
		t.Fatalf("ChangeQuoteOpened = %+v", opened)
	}
	if !slices.Equal(lineStrings(opened.Baseline), lineStrings(c.Lines())) {
		t.Fatalf("baseline %q, customer %q", lineStrings(opened.Baseline), lineStrings(c.Lines()))
	}
	p := q.Preview()
	if got := jsonOf(t, p); !strings.Contains(got, `"added_products":[],"current_products":[{`) ||
		!strings.Contains(got, `"changes_to_existing_products":[],"prior_monthly_total":"3341.80","new_monthly_total":"3341.80","monthly_difference":"0.00"}`) {
		t.Fatalf("opened preview JSON = %s", got)
	}

	// Raise EMAIL-SEC to 700.
	must(t, q.ChangeSeats(cat, emailSec, 700))
	sc := lastEvent[domain.SeatsChanged](t, q.Changes())
	if sc.ProductCode != emailSec || sc.TermType != month12 || sc.PriorSeats != 682 || sc.PreviousSeats != 682 || sc.NewSeats != 700 || sc.UnitPrice.String() != "3.20" {
		t.Fatalf("SeatsChanged = %+v", sc)
	}
	p = q.Preview()
	wantChanges := `[{"product_code":"EMAIL-SEC","product_name":"Email Security Cloud Gateway","term_type":"12 Month","quantity":-682,"unit_price":"3.25","monthly_payment":"-2216.50"},` +
		`{"product_code":"EMAIL-SEC","product_name":"Email Security Cloud Gateway","term_type":"12 Month","quantity":700,"unit_price":"3.20","monthly_payment":"2240.00"}]`
	if got := jsonOf(t, p.ChangesToExistingProducts); got != wantChanges {
		t.Fatalf("changes_to_existing_products\n got %s\nwant %s", got, wantChanges)
	}
	wantCurrent := []string{
		"EMAIL-SEC|Email Security Cloud Gateway|12 Month|682|3.25|2216.50",
		"ARCHIVE|Cloud Archive|12 Month|682|1.65|1125.30",
	}
	if got := pricedStrings(p.CurrentProducts); !slices.Equal(got, wantCurrent) {
		t.Fatalf("current_products (the subscription as opened)\n got %q\nwant %q", got, wantCurrent)
	}
	if p.PriorMonthlyTotal.String() != "3341.80" || p.NewMonthlyTotal.String() != "3365.30" || p.MonthlyDifference.String() != "23.50" {
		t.Fatalf("totals: prior %s new %s diff %s; want 3341.80 3365.30 23.50", p.PriorMonthlyTotal, p.NewMonthlyTotal, p.MonthlyDifference)
	}

	// Add AWARENESS, 700 seats on 12 Month.
	must(t, q.AddProduct(cat, awareness, month12, 700))
	pa := lastEvent[domain.ProductAdded](t, q.Changes())
	if pa.ProductCode != awareness || pa.ProductName != awarenessNm || pa.TermType != month12 || !pa.PerUser || pa.Seats != 700 || pa.UnitPrice.String() != "1.25" {
		t.Fatalf("ProductAdded = %+v", pa)
	}
	p = q.Preview()
	if got, want := pricedStrings(p.AddedProducts), []string{"AWARENESS|Security Awareness Training|12 Month|700|1.25|875.00"}; !slices.Equal(got, want) {
		t.Fatalf("added_products\n got %q\nwant %q", got, want)
	}
	if p.PriorMonthlyTotal.String() != "3341.80" || p.NewMonthlyTotal.String() != "4240.30" || p.MonthlyDifference.String() != "898.50" {
		t.Fatalf("totals: prior %s new %s diff %s; want 3341.80 4240.30 898.50", p.PriorMonthlyTotal, p.NewMonthlyTotal, p.MonthlyDifference)
	}
	if p.Status != domain.StatusDraft || p.Version != 3 || p.QuoteID != quoteID || p.Customer != (domain.CustomerRef{ID: "cust-contoso", Name: "Contoso Ltd"}) || p.Currency != "USD" {
		t.Fatalf("preview header = %+v", p)
	}

	// Review: the Change Order Summary.
	must(t, q.Review(tReview))
	if q.Status() != domain.StatusReviewed || q.Version() != 4 {
		t.Fatalf("reviewed: status %s version %d", q.Status(), q.Version())
	}
	s, err := q.Summary()
	must(t, err)
	wantLines := []string{
		"EMAIL-SEC|Email Security Cloud Gateway|12 Month|682|700|3.25|3.20|2216.50|2240.00|true",
		"ARCHIVE|Cloud Archive|12 Month|682|682|1.65|1.65|1125.30|1125.30|true",
		"AWARENESS|Security Awareness Training|12 Month|0|700|0.00|1.25|0.00|875.00|true",
	}
	if got := orderLineStrings(s.Lines); !slices.Equal(got, wantLines) {
		t.Fatalf("summary lines\n got %q\nwant %q", got, wantLines)
	}
	if s.QuoteID != quoteID || s.Status != domain.StatusReviewed || s.Version != 4 || s.Currency != "USD" ||
		s.MSP != (domain.MSPRef{ID: "msp-northwind", Name: mspName}) || s.CompanyName != "Contoso Ltd" || s.TotalUsers != 700 {
		t.Fatalf("summary header = %+v", s)
	}
	if s.PriorMonthlyTotal.String() != "3341.80" || s.NewMonthlyTotal.String() != "4240.30" {
		t.Fatalf("summary totals %s -> %s", s.PriorMonthlyTotal, s.NewMonthlyTotal)
	}
	if !s.NewMonthlyTotal.Equal(q.Preview().NewMonthlyTotal) {
		t.Fatalf("summary total %s differs from preview total %s", s.NewMonthlyTotal, q.Preview().NewMonthlyTotal)
	}
	if s.Acknowledgements != nil || s.SubmittedAt != nil || !s.ReviewedAt.Equal(tReview) {
		t.Fatalf("summary acks %+v, submitted %v, reviewed %v", s.Acknowledgements, s.SubmittedAt, s.ReviewedAt)
	}
	if js := jsonOf(t, s); !strings.Contains(js, `"acknowledgements":null`) || !strings.Contains(js, `"submitted_at":null`) || !strings.Contains(js, `"status":"reviewed"`) {
		t.Fatalf("summary JSON = %s", js)
	}
	or := lastEvent[domain.OrderReviewed](t, q.Changes())
	if !slices.Equal(orderLineStrings(or.Lines), wantLines) || or.TotalUsers != 700 || or.PriorMonthlyTotal.String() != "3341.80" || or.NewMonthlyTotal.String() != "4240.30" {
		t.Fatalf("OrderReviewed = %+v", or)
	}

	// Acknowledge.
	must(t, q.Acknowledge(true, true, sam, tAck))
	s, err = q.Summary()
	must(t, err)
	if s.Acknowledgements == nil || *s.Acknowledgements != (domain.Acknowledgements{MSAGovernsOrder: true, AuthorizedToOrder: true, By: "u-sam", At: tAck}) {
		t.Fatalf("summary acknowledgements = %+v", s.Acknowledgements)
	}
	if q.Status() != domain.StatusReviewed {
		t.Fatalf("acknowledged: status %s", q.Status())
	}

	// Submit.
	must(t, q.Submit(c, alex, tSubmit))
	if q.Status() != domain.StatusSubmitted || q.Version() != 6 || q.ExpectedVersion() != 0 {
		t.Fatalf("submitted: status %s version %d expected %d", q.Status(), q.Version(), q.ExpectedVersion())
	}
	sub := lastEvent[domain.OrderSubmitted](t, q.Changes())
	if sub.CustomerID != "cust-contoso" || sub.BaselineVersion != 1 || sub.TotalUsers != 700 || sub.SubmittedBy != "u-alex" || !sub.SubmittedAt.Equal(tSubmit) ||
		sub.PriorMonthlyTotal.String() != "3341.80" || sub.NewMonthlyTotal.String() != "4240.30" || sub.MonthlyDifference.String() != "898.50" ||
		!slices.Equal(orderLineStrings(sub.Lines), wantLines) {
		t.Fatalf("OrderSubmitted = %+v", sub)
	}
	s, err = q.Summary()
	must(t, err)
	if s.Status != domain.StatusSubmitted || s.SubmittedAt == nil || !s.SubmittedAt.Equal(tSubmit) {
		t.Fatalf("submitted summary: status %s submitted_at %v", s.Status, s.SubmittedAt)
	}

	// The customer is amended.
	if c.Version() != 2 || c.ExpectedVersion() != 1 || len(c.Changes()) != 1 {
		t.Fatalf("customer: version %d expected %d changes %d; want 2 1 1", c.Version(), c.ExpectedVersion(), len(c.Changes()))
	}
	am := lastEvent[domain.SubscriptionAmended](t, c.Changes())
	if am.CustomerID != "cust-contoso" || am.QuoteID != quoteID || am.NewMonthlyTotal.String() != "4240.30" || !am.AmendedAt.Equal(tSubmit) ||
		!slices.Equal(orderLineStrings(am.Lines), wantLines) {
		t.Fatalf("SubscriptionAmended = %+v", am)
	}
	wantSub := []string{
		"EMAIL-SEC|Email Security Cloud Gateway|12 Month|true|700|3.20",
		"ARCHIVE|Cloud Archive|12 Month|true|682|1.65",
		"AWARENESS|Security Awareness Training|12 Month|true|700|1.25",
	}
	if got := lineStrings(c.Lines()); !slices.Equal(got, wantSub) {
		t.Fatalf("amended subscription\n got %q\nwant %q", got, wantSub)
	}
	if c.MonthlyTotal().String() != "4240.30" || c.TotalUsers() != 700 {
		t.Fatalf("amended customer: total %s users %d", c.MonthlyTotal(), c.TotalUsers())
	}

	// A new quote starts from 700 seats, on the amended customer in memory
	// and on the customer loaded again from its events.
	reloaded, err := domain.LoadCustomer(roundTrip(t, append([]domain.Event{mustOnboardedEvent(t)}, c.Changes()...)))
	must(t, err)
	for name, cust := range map[string]*domain.Customer{"in memory": c, "reloaded": reloaded} {
		next := openQuote(t, cust, quote2)
		if next.BaselineVersion() != 2 {
			t.Fatalf("%s: next quote BaselineVersion = %d, want 2", name, next.BaselineVersion())
		}
		np := next.Preview()
		wantNext := []string{
			"EMAIL-SEC|Email Security Cloud Gateway|12 Month|700|3.20|2240.00",
			"ARCHIVE|Cloud Archive|12 Month|682|1.65|1125.30",
			"AWARENESS|Security Awareness Training|12 Month|700|1.25|875.00",
		}
		if got := pricedStrings(np.CurrentProducts); !slices.Equal(got, wantNext) || np.PriorMonthlyTotal.String() != "4240.30" {
			t.Fatalf("%s: next quote current products %q total %s", name, got, np.PriorMonthlyTotal)
		}
		mustRefuse(t, next, domain.ErrSeatsDecrease, func() error { return next.ChangeSeats(cat, emailSec, 699) })
		mustRefuse(t, next, domain.ErrProductAlreadyPresent, func() error { return next.AddProduct(cat, awareness, month12, 800) })
	}
}

func TestChangeSeatsNeverLowers(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	tests := []struct {
		name  string
		setup func(*domain.ChangeQuote) error
		total int
		want  *domain.Error
	}{
		{"one below prior", nil, 681, domain.ErrSeatsDecrease},
		{"one seat", nil, 1, domain.ErrSeatsDecrease},
		{"zero on a baseline line", nil, 0, domain.ErrSeatsDecrease},
		{"negative on a baseline line", nil, -5, domain.ErrSeatsDecrease},
		{"below prior after a raise", func(q *domain.ChangeQuote) error { return q.ChangeSeats(cat, emailSec, 700) }, 681, domain.ErrSeatsDecrease},
		{"above MaxSeats", nil, domain.MaxSeats + 1, domain.ErrInvalidSeats},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := openQuote(t, contoso(t), quoteID)
			if tt.setup != nil {
				must(t, tt.setup(q))
			}
			mustRefuse(t, q, tt.want, func() error { return q.ChangeSeats(cat, emailSec, tt.total) })
		})
	}
}

func TestChangeSeatsTakesTheNewTotal(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	q := openQuote(t, contoso(t), quoteID)

	must(t, q.ChangeSeats(cat, emailSec, 700)) // 682 + 18 more is entered as 700
	if got := changeStrings(q.Preview().ChangesToExistingProducts)[1]; got != "EMAIL-SEC|Email Security Cloud Gateway|12 Month|700|3.20|2240.00" {
		t.Fatalf("700 entered: new line %q", got)
	}

	must(t, q.ChangeSeats(cat, emailSec, 750))
	sc := lastEvent[domain.SeatsChanged](t, q.Changes())
	if sc.PriorSeats != 682 || sc.PreviousSeats != 700 || sc.NewSeats != 750 || sc.UnitPrice.String() != "3.20" {
		t.Fatalf("SeatsChanged = %+v", sc)
	}
	want := []string{
		"EMAIL-SEC|Email Security Cloud Gateway|12 Month|-682|3.25|-2216.50",
		"EMAIL-SEC|Email Security Cloud Gateway|12 Month|750|3.20|2400.00",
	}
	if got := changeStrings(q.Preview().ChangesToExistingProducts); !slices.Equal(got, want) {
		t.Fatalf("changes\n got %q\nwant %q", got, want)
	}

	// Lowering a raise, still above the prior quantity, is allowed and
	// reprices at the tier the new total reaches.
	must(t, q.ChangeSeats(cat, emailSec, 690))
	if got := changeStrings(q.Preview().ChangesToExistingProducts)[1]; got != "EMAIL-SEC|Email Security Cloud Gateway|12 Month|690|3.25|2242.50" {
		t.Fatalf("690 entered: new line %q", got)
	}
	if got := q.Preview().NewMonthlyTotal.String(); got != "3367.80" {
		t.Fatalf("new total %s, want 3367.80", got)
	}
}

func TestChangeSeatsToTheCurrentValueRecordsNothing(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	tests := []struct {
		name  string
		setup func(*domain.ChangeQuote) error
		code  string
		total int
	}{
		{"the prior quantity, unchanged", nil, emailSec, 682},
		{"the raised quantity again", func(q *domain.ChangeQuote) error { return q.ChangeSeats(cat, emailSec, 700) }, emailSec, 700},
		{"an added product's seats again", func(q *domain.ChangeQuote) error { return q.AddProduct(cat, awareness, month12, 50) }, awareness, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := openQuote(t, contoso(t), quoteID)
			if tt.setup != nil {
				must(t, tt.setup(q))
			}
			n, v, before := len(q.Changes()), q.Version(), jsonOf(t, q.Preview())
			must(t, q.ChangeSeats(cat, tt.code, tt.total))
			if len(q.Changes()) != n || q.Version() != v || jsonOf(t, q.Preview()) != before {
				t.Fatalf("ChangeSeats to the current value recorded %d event(s), version %d -> %d", len(q.Changes())-n, v, q.Version())
			}
		})
	}
}

func TestChangeSeatsBackToPriorRemovesTheChange(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	q := openQuote(t, contoso(t), quoteID)
	must(t, q.ChangeSeats(cat, emailSec, 700))
	must(t, q.ChangeSeats(cat, emailSec, 682))

	sc := lastEvent[domain.SeatsChanged](t, q.Changes())
	if sc.PriorSeats != 682 || sc.PreviousSeats != 700 || sc.NewSeats != 682 || sc.UnitPrice.String() != "3.25" {
		t.Fatalf("SeatsChanged back = %+v; want 700 -> 682 at the contracted 3.25", sc)
	}
	p := q.Preview()
	if len(p.ChangesToExistingProducts) != 0 || p.NewMonthlyTotal.String() != "3341.80" || p.MonthlyDifference.String() != "0.00" {
		t.Fatalf("preview after going back: changes %q, new %s, diff %s", changeStrings(p.ChangesToExistingProducts), p.NewMonthlyTotal, p.MonthlyDifference)
	}
	mustRefuse(t, q, domain.ErrNothingToReview, func() error { return q.Review(tReview) })
}

func TestAddProductRefusals(t *testing.T) {
	t.Parallel()
	eurCatalog := func(t *testing.T) *domain.Catalog {
		ps := append(fixtureProducts(t), domain.Product{
			Code: "EU-BACKUP", Name: "EU Backup", PerUser: true, Currency: "EUR", TermTypes: []string{month12},
			Tiers: []domain.Tier{{TermType: month12, MinSeats: 1, UnitPrice: domain.MustMoney("2.10")}},
		})
		cat, err := domain.NewCatalog(ps)
		must(t, err)
		return cat
	}
	tests := []struct {
		name    string
		catalog func(*testing.T) *domain.Catalog
		setup   func(*domain.Catalog, *domain.ChangeQuote) error
		code    string
		term    string
		seats   int
		want    *domain.Error
	}{
		{"unknown code", nil, nil, "NOPE", month12, 10, domain.ErrUnknownProduct},
		{"product on the subscription", nil, nil, emailSec, month12, 700, domain.ErrProductAlreadyPresent},
		{"product on the subscription, another term", nil, nil, archive, "36 Month", 700, domain.ErrProductAlreadyPresent},
		{"added twice", nil, func(cat *domain.Catalog, q *domain.ChangeQuote) error {
			return q.AddProduct(cat, awareness, month12, 100)
		},
			awareness, month12, 200, domain.ErrProductAlreadyPresent},
		{"term not offered", nil, nil, awareness, "36 Month", 100, domain.ErrUnknownTermType},
		{"zero seats", nil, nil, awareness, month12, 0, domain.ErrInvalidSeats},
		{"negative seats", nil, nil, dmarc, month12, -1, domain.ErrInvalidSeats},
		{"above MaxSeats", nil, nil, awareness, month12, domain.MaxSeats + 1, domain.ErrInvalidSeats},
		{"currency mismatch", eurCatalog, nil, "EU-BACKUP", month12, 10, domain.ErrCurrencyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cat := fixtureCatalog(t)
			if tt.catalog != nil {
				cat = tt.catalog(t)
			}
			q := openQuote(t, contoso(t), quoteID)
			if tt.setup != nil {
				must(t, tt.setup(cat, q))
			}
			mustRefuse(t, q, tt.want, func() error { return q.AddProduct(cat, tt.code, tt.term, tt.seats) })
		})
	}
}

func TestAddProductPricesByTierAndCountsOnlyPerUserSeats(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	q := openQuote(t, contoso(t), quoteID)
	must(t, q.AddProduct(cat, awareness, month12, 1000))
	must(t, q.AddProduct(cat, dmarc, month12, 1000)) // per domain: never counts as users
	want := []string{
		"AWARENESS|Security Awareness Training|12 Month|1000|0.99|990.00",
		"DMARC|DMARC Analyzer (per domain)|12 Month|1000|45.00|45000.00",
	}
	if got := pricedStrings(q.Preview().AddedProducts); !slices.Equal(got, want) {
		t.Fatalf("added\n got %q\nwant %q", got, want)
	}
	if got := q.Preview().NewMonthlyTotal.String(); got != "49331.80" {
		t.Fatalf("new total %s, want 3341.80 + 990.00 + 45000.00 = 49331.80", got)
	}
	must(t, q.Review(tReview))
	s, err := q.Summary()
	must(t, err)
	if s.TotalUsers != 1000 {
		t.Fatalf("TotalUsers = %d, want 1000 (AWARENESS, per user)", s.TotalUsers)
	}

	q2 := openQuote(t, contoso(t), quote2)
	must(t, q2.AddProduct(cat, dmarc, month12, 5000))
	must(t, q2.Review(tReview))
	s2, err := q2.Summary()
	must(t, err)
	if s2.TotalUsers != 682 {
		t.Fatalf("TotalUsers = %d, want 682: 5000 DMARC domains are not users", s2.TotalUsers)
	}
	if last := s2.Lines[len(s2.Lines)-1]; last.PerUser || last.PriorQuantity != 0 || last.PriorPayment.String() != "0.00" {
		t.Fatalf("DMARC line = %+v", last)
	}
}

func TestRemoveProduct(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)

	t.Run("an added product is removed", func(t *testing.T) {
		t.Parallel()
		q := openQuote(t, contoso(t), quoteID)
		must(t, q.ChangeSeats(cat, emailSec, 700))
		must(t, q.AddProduct(cat, awareness, month12, 700))
		must(t, q.RemoveProduct(awareness))
		if e := lastEvent[domain.ProductRemoved](t, q.Changes()); e.ProductCode != awareness {
			t.Fatalf("ProductRemoved = %+v", e)
		}
		p := q.Preview()
		if len(p.AddedProducts) != 0 || p.NewMonthlyTotal.String() != "3365.30" {
			t.Fatalf("after remove: added %q, new total %s", pricedStrings(p.AddedProducts), p.NewMonthlyTotal)
		}
	})
	t.Run("removed then added again", func(t *testing.T) {
		t.Parallel()
		q := openQuote(t, contoso(t), quoteID)
		must(t, q.AddProduct(cat, awareness, month12, 100))
		must(t, q.RemoveProduct(awareness))
		must(t, q.AddProduct(cat, awareness, month12, 200))
		if got := pricedStrings(q.Preview().AddedProducts); !slices.Equal(got, []string{"AWARENESS|Security Awareness Training|12 Month|200|1.25|250.00"}) {
			t.Fatalf("added %q", got)
		}
	})
	t.Run("only the named product is removed", func(t *testing.T) {
		t.Parallel()
		q := openQuote(t, contoso(t), quoteID)
		must(t, q.AddProduct(cat, awareness, month12, 100))
		must(t, q.AddProduct(cat, dmarc, month12, 2))
		must(t, q.RemoveProduct(awareness))
		if got := pricedStrings(q.Preview().AddedProducts); !slices.Equal(got, []string{"DMARC|DMARC Analyzer (per domain)|12 Month|2|45.00|90.00"}) {
			t.Fatalf("added %q", got)
		}
	})

	refusals := []struct {
		name  string
		setup func(*domain.ChangeQuote) error
		code  string
	}{
		{"a baseline product", nil, emailSec},
		{"a raised baseline product", func(q *domain.ChangeQuote) error { return q.ChangeSeats(cat, emailSec, 700) }, emailSec},
		{"a catalog product never added", nil, awareness},
		{"an unknown product", nil, "NOPE"},
		{"removed twice", func(q *domain.ChangeQuote) error {
			if err := q.AddProduct(cat, awareness, month12, 100); err != nil {
				return err
			}
			return q.RemoveProduct(awareness)
		}, awareness},
	}
	for _, tt := range refusals {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			t.Parallel()
			q := openQuote(t, contoso(t), quoteID)
			if tt.setup != nil {
				must(t, tt.setup(q))
			}
			mustRefuse(t, q, domain.ErrProductNotAdded, func() error { return q.RemoveProduct(tt.code) })
		})
	}
}

func TestChangeSeatsOnProductsNotOnTheSubscription(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	t.Run("catalog product not on the subscription", func(t *testing.T) {
		t.Parallel()
		q := openQuote(t, contoso(t), quoteID)
		mustRefuse(t, q, domain.ErrProductNotOnSubscription, func() error { return q.ChangeSeats(cat, dmarc, 3) })
	})
	t.Run("unknown product", func(t *testing.T) {
		t.Parallel()
		q := openQuote(t, contoso(t), quoteID)
		mustRefuse(t, q, domain.ErrUnknownProduct, func() error { return q.ChangeSeats(cat, "NOPE", 3) })
	})
	t.Run("an added product is repriced", func(t *testing.T) {
		t.Parallel()
		q := openQuote(t, contoso(t), quoteID)
		must(t, q.AddProduct(cat, awareness, month12, 500))
		must(t, q.ChangeSeats(cat, awareness, 1000))
		sc := lastEvent[domain.SeatsChanged](t, q.Changes())
		if sc.PriorSeats != 0 || sc.PreviousSeats != 500 || sc.NewSeats != 1000 || sc.UnitPrice.String() != "0.99" || sc.TermType != month12 {
			t.Fatalf("SeatsChanged = %+v", sc)
		}
		p := q.Preview()
		if got := pricedStrings(p.AddedProducts); !slices.Equal(got, []string{"AWARENESS|Security Awareness Training|12 Month|1000|0.99|990.00"}) {
			t.Fatalf("added %q", got)
		}
		if len(p.ChangesToExistingProducts) != 0 {
			t.Fatalf("an added product shows in changes to existing products: %q", changeStrings(p.ChangesToExistingProducts))
		}
		// The quote's own addition may go down again (its prior is 0)...
		must(t, q.ChangeSeats(cat, awareness, 10))
		if got := pricedStrings(q.Preview().AddedProducts); !slices.Equal(got, []string{"AWARENESS|Security Awareness Training|12 Month|10|1.25|12.50"}) {
			t.Fatalf("added %q", got)
		}
		// ...but not to nothing.
		mustRefuse(t, q, domain.ErrInvalidSeats, func() error { return q.ChangeSeats(cat, awareness, 0) })
	})
}

// A customer's line whose product or term the catalog no longer offers can
// stay as it is, or go back to its prior quantity, but cannot be raised:
// there is no catalog price for the new total.
func TestChangeSeatsOnALineTheCatalogNoLongerPrices(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	lines := append(contosoLines(),
		domain.Line{ProductCode: "LEGACY-AV", ProductName: "Legacy Antivirus", TermType: month12, PerUser: true, Seats: 100, UnitPrice: domain.MustMoney("0.80")})
	lines[1].TermType = "Monthly" // ARCHIVE is no longer offered monthly
	onboarded, err := domain.OnboardCustomer("cust-legacy", "msp-northwind", "Legacy Co", "USD", lines, t0)
	must(t, err)
	tests := []struct {
		code         string
		prior, total int
		want         *domain.Error
	}{
		{"LEGACY-AV", 100, 150, domain.ErrUnknownProduct},
		{archive, 682, 700, domain.ErrUnknownTermType},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			q := openQuote(t, onboarded, quoteID)
			mustRefuse(t, q, tt.want, func() error { return q.ChangeSeats(cat, tt.code, tt.total) })
			must(t, q.ChangeSeats(cat, tt.code, tt.prior)) // unchanged: no catalog price needed
			if len(q.Changes()) != 1 {
				t.Fatalf("keeping the prior quantity recorded %d event(s)", len(q.Changes())-1)
			}
		})
	}
}

func TestReview(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	t.Run("nothing to review", func(t *testing.T) {
		t.Parallel()
		q := openQuote(t, contoso(t), quoteID)
		mustRefuse(t, q, domain.ErrNothingToReview, func() error { return q.Review(tReview) })
		must(t, q.Save(t0))
		mustRefuse(t, q, domain.ErrNothingToReview, func() error { return q.Review(tReview) })
		must(t, q.AddProduct(cat, dmarc, month12, 1))
		must(t, q.RemoveProduct(dmarc))
		mustRefuse(t, q, domain.ErrNothingToReview, func() error { return q.Review(tReview) })
	})
	t.Run("an added product alone is a change", func(t *testing.T) {
		t.Parallel()
		q := openQuote(t, contoso(t), quoteID)
		must(t, q.AddProduct(cat, dmarc, month12, 1))
		must(t, q.Review(tReview))
		if q.Status() != domain.StatusReviewed {
			t.Fatalf("status %s", q.Status())
		}
	})
	t.Run("summary before review", func(t *testing.T) {
		t.Parallel()
		q := seedQuote(t, contoso(t), quoteID)
		_, err := q.Summary()
		assertCode(t, err, domain.ErrNotReviewed)
	})
}

func TestEditAfterReviewSendsTheQuoteBackToDraft(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	edits := []struct {
		name string
		edit func(*domain.ChangeQuote) error
	}{
		{"add", func(q *domain.ChangeQuote) error { return q.AddProduct(cat, dmarc, month12, 2) }},
		{"remove", func(q *domain.ChangeQuote) error { return q.RemoveProduct(awareness) }},
		{"change seats", func(q *domain.ChangeQuote) error { return q.ChangeSeats(cat, emailSec, 800) }},
		{"change seats back to prior", func(q *domain.ChangeQuote) error { return q.ChangeSeats(cat, emailSec, 682) }},
	}
	for _, tt := range edits {
		for _, acked := range []bool{false, true} {
			t.Run(tt.name+map[bool]string{false: "", true: " after acknowledgement"}[acked], func(t *testing.T) {
				t.Parallel()
				c := contoso(t)
				q := reviewed(t, c, acked)
				must(t, tt.edit(q))
				if q.Status() != domain.StatusDraft {
					t.Fatalf("status after edit = %s, want draft", q.Status())
				}
				_, err := q.Summary()
				assertCode(t, err, domain.ErrNotReviewed)
				mustRefuse(t, q, domain.ErrNotReviewed, func() error { return q.Acknowledge(true, true, sam, tAck) })
				mustRefuse(t, q, domain.ErrNotReviewed, func() error { return q.Submit(c, alex, tSubmit) })
				if len(c.Changes()) != 0 || c.Version() != 1 {
					t.Fatalf("a refused submit amended the customer")
				}
			})
		}
	}
}

func TestAcknowledgementsMustFollowTheLatestReview(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	t.Run("review, acknowledge, review again", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		q := reviewed(t, c, true)
		must(t, q.Review(tReview.Add(time.Minute)))
		s, err := q.Summary()
		must(t, err)
		if s.Acknowledgements != nil {
			t.Fatalf("acknowledgements survive a new review: %+v", s.Acknowledgements)
		}
		mustRefuse(t, q, domain.ErrAcknowledgementsMissing, func() error { return q.Submit(c, alex, tSubmit) })
	})
	t.Run("edit, review again", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		q := reviewed(t, c, true)
		must(t, q.ChangeSeats(cat, emailSec, 800))
		must(t, q.Review(tReview.Add(time.Minute)))
		mustRefuse(t, q, domain.ErrAcknowledgementsMissing, func() error { return q.Submit(c, alex, tSubmit) })
		must(t, q.Acknowledge(true, true, sam, tAck))
		must(t, q.Submit(c, alex, tSubmit))
		s, err := q.Summary()
		must(t, err)
		if s.Lines[0].CurrentQuantity != 800 || c.Lines()[0].Seats != 800 {
			t.Fatalf("submitted %d seats, customer has %d; want the re-reviewed 800", s.Lines[0].CurrentQuantity, c.Lines()[0].Seats)
		}
	})
}

func TestAcknowledge(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ msa, auth bool }{{false, true}, {true, false}, {false, false}} {
		t.Run("msa="+strconv.FormatBool(tt.msa)+",authorized="+strconv.FormatBool(tt.auth), func(t *testing.T) {
			t.Parallel()
			q := reviewed(t, contoso(t), false)
			mustRefuse(t, q, domain.ErrAcknowledgementsMissing, func() error { return q.Acknowledge(tt.msa, tt.auth, sam, tAck) })
		})
	}
	t.Run("before review", func(t *testing.T) {
		t.Parallel()
		q := seedQuote(t, contoso(t), quoteID)
		mustRefuse(t, q, domain.ErrNotReviewed, func() error { return q.Acknowledge(true, true, sam, tAck) })
		must(t, q.Save(t0))
		mustRefuse(t, q, domain.ErrNotReviewed, func() error { return q.Acknowledge(true, true, sam, tAck) })
	})
	t.Run("records who and when", func(t *testing.T) {
		t.Parallel()
		q := reviewed(t, contoso(t), false)
		at := domain.FixedClock{T: time.Date(2025, 3, 14, 11, 50, 0, 0, time.FixedZone("CET+2", 2*3600))}
		must(t, q.Acknowledge(true, true, sam, at.Now()))
		e := lastEvent[domain.AcknowledgementsGiven](t, q.Changes())
		if !e.MSAGovernsOrder || !e.AuthorizedToOrder || e.By != "u-sam" || e.MSPID != "msp-northwind" {
			t.Fatalf("AcknowledgementsGiven = %+v", e)
		}
		if !e.At.Equal(at.Now()) || e.At.Location() != time.UTC {
			t.Fatalf("At = %v, want %v in UTC", e.At, at.Now().UTC())
		}
		if q.Status() != domain.StatusReviewed {
			t.Fatalf("status %s", q.Status())
		}
	})
}

// Acknowledge and Submit are given the actor: the acknowledgements must be
// given "by an MSP user" of the quote's MSP, and another MSP's quote does
// not exist for it (DESIGN.md), as OpenChangeQuote already enforces.
func TestAcknowledgeAndSubmitByAnotherMSPAreRefused(t *testing.T) {
	t.Parallel()
	t.Run("acknowledge", func(t *testing.T) {
		t.Parallel()
		q := reviewed(t, contoso(t), false)
		mustRefuse(t, q, domain.ErrNotFound, func() error { return q.Acknowledge(true, true, kim, tAck) })
	})
	t.Run("submit", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		q := reviewed(t, c, true)
		mustRefuse(t, q, domain.ErrNotFound, func() error { return q.Submit(c, kim, tSubmit) })
		if len(c.Changes()) != 0 {
			t.Fatal("another MSP's submit amended the customer")
		}
	})
}

func TestSubmitRefusals(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	t.Run("without acknowledgements", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		q := reviewed(t, c, false)
		mustRefuse(t, q, domain.ErrAcknowledgementsMissing, func() error { return q.Submit(c, alex, tSubmit) })
		if len(c.Changes()) != 0 || c.Version() != 1 {
			t.Fatal("a refused submit amended the customer")
		}
	})
	t.Run("before review", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		q := seedQuote(t, c, quoteID)
		mustRefuse(t, q, domain.ErrNotReviewed, func() error { return q.Submit(c, alex, tSubmit) })
	})
	t.Run("baseline changed", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		first := openQuote(t, c, quoteID)
		second := openQuote(t, c, quote2)
		must(t, first.ChangeSeats(cat, emailSec, 700))
		must(t, first.Review(tReview))
		must(t, first.Acknowledge(true, true, alex, tAck))
		must(t, first.Submit(c, alex, tSubmit))

		// The application loads the customer again: onboarding + amendment.
		again, err := domain.LoadCustomer(roundTrip(t, append([]domain.Event{mustOnboardedEvent(t)}, c.Changes()...)))
		must(t, err)
		must(t, second.AddProduct(cat, awareness, month12, 700))
		must(t, second.Review(tReview))
		must(t, second.Acknowledge(true, true, sam, tAck))
		mustRefuse(t, second, domain.ErrBaselineChanged, func() error { return second.Submit(again, sam, tSubmit) })
		if second.Status() != domain.StatusReviewed {
			t.Fatalf("status %s", second.Status())
		}
		if len(again.Changes()) != 0 || again.Version() != 2 {
			t.Fatalf("a refused submit amended the customer: %d changes, version %d", len(again.Changes()), again.Version())
		}
		// The same in-memory customer that the first submit amended is refused too.
		mustRefuse(t, second, domain.ErrBaselineChanged, func() error { return second.Submit(c, sam, tSubmit) })
	})
	t.Run("another customer or none", func(t *testing.T) {
		t.Parallel()
		q := reviewed(t, contoso(t), true)
		other, err := domain.OnboardCustomer("cust-adatum", "msp-northwind", "Adatum Corporation", "USD", contosoLines(), t0)
		must(t, err)
		for _, c := range []*domain.Customer{nil, other} {
			n := len(q.Changes())
			if err := q.Submit(c, alex, tSubmit); err == nil {
				t.Fatalf("Submit with customer %v succeeded", c)
			}
			if len(q.Changes()) != n || q.Status() != domain.StatusReviewed {
				t.Fatal("a refused submit recorded an event")
			}
		}
		if len(other.Changes()) != 1 {
			t.Fatal("the wrong customer was amended")
		}
	})
}

func TestClosedQuotesRefuseEveryCommand(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	closers := map[string]func(*domain.ChangeQuote, *domain.Customer) error{
		"submitted": func(q *domain.ChangeQuote, c *domain.Customer) error {
			if err := q.Review(tReview); err != nil {
				return err
			}
			if err := q.Acknowledge(true, true, sam, tAck); err != nil {
				return err
			}
			return q.Submit(c, alex, tSubmit)
		},
		"cancelled": func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.Cancel(t0) },
	}
	// Each command is one that an open quote would accept.
	commands := map[string]func(*domain.ChangeQuote, *domain.Customer) error{
		"AddProduct":    func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.AddProduct(cat, dmarc, month12, 2) },
		"RemoveProduct": func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.RemoveProduct(awareness) },
		"ChangeSeats":   func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.ChangeSeats(cat, emailSec, 800) },
		"Save":          func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.Save(t0) },
		"Cancel":        func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.Cancel(t0) },
		"Review":        func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.Review(tReview) },
		"Acknowledge":   func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.Acknowledge(true, true, sam, tAck) },
		"Submit":        func(q *domain.ChangeQuote, c *domain.Customer) error { return q.Submit(c, alex, tSubmit) },
	}
	for status, closeQuote := range closers {
		for name, cmd := range commands {
			t.Run(status+"/"+name, func(t *testing.T) {
				t.Parallel()
				c := contoso(t)
				q := seedQuote(t, c, quoteID)
				must(t, closeQuote(q, c))
				if q.Status().String() != status || !q.Status().Closed() {
					t.Fatalf("status %s, closed %t", q.Status(), q.Status().Closed())
				}
				fresh := contoso(t) // a customer at the quote's baseline version
				mustRefuse(t, q, domain.ErrQuoteClosed, func() error { return cmd(q, fresh) })
				if len(fresh.Changes()) != 0 {
					t.Fatal("a closed quote amended the customer")
				}
			})
		}
	}
}

func TestSaveAndCancel(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	t.Run("save", func(t *testing.T) {
		t.Parallel()
		q := openQuote(t, contoso(t), quoteID)
		must(t, q.Save(tReview))
		if q.Status() != domain.StatusSaved || q.Version() != 2 {
			t.Fatalf("status %s version %d", q.Status(), q.Version())
		}
		if e := lastEvent[domain.QuoteSaved](t, q.Changes()); !e.SavedAt.Equal(tReview) {
			t.Fatalf("QuoteSaved = %+v", e)
		}
	})
	t.Run("editing a saved quote keeps it saved", func(t *testing.T) {
		t.Parallel()
		q := openQuote(t, contoso(t), quoteID)
		must(t, q.Save(t0))
		must(t, q.ChangeSeats(cat, emailSec, 700))
		must(t, q.AddProduct(cat, awareness, month12, 10))
		must(t, q.RemoveProduct(awareness))
		if q.Status() != domain.StatusSaved {
			t.Fatalf("status %s, want saved", q.Status())
		}
		must(t, q.Review(tReview))
		if q.Status() != domain.StatusReviewed {
			t.Fatalf("a saved quote reviewed: status %s", q.Status())
		}
	})
	t.Run("saving a reviewed quote is not an edit: review and acknowledgements stay", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		q := reviewed(t, c, true)
		before, err := q.Summary()
		if err != nil {
			t.Fatal(err)
		}
		must(t, q.Save(t0))
		if q.Status() != domain.StatusReviewed {
			t.Fatalf("status %s, want reviewed", q.Status())
		}
		after, err := q.Summary()
		if err != nil || after.Acknowledgements == nil || !reflect.DeepEqual(after.Lines, before.Lines) {
			t.Fatalf("summary after save = %+v, %v", after, err)
		}
		must(t, q.Submit(c, alex, tSubmit))
	})
	t.Run("saving a reviewed quote without acknowledgements keeps it reviewed", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		q := reviewed(t, c, false)
		must(t, q.Save(t0))
		mustRefuse(t, q, domain.ErrAcknowledgementsMissing, func() error { return q.Submit(c, alex, tSubmit) })
		must(t, q.ChangeSeats(cat, emailSec, 750))
		if q.Status() != domain.StatusDraft {
			t.Fatalf("an edit after review: status %s, want draft", q.Status())
		}
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		q := seedQuote(t, contoso(t), quoteID)
		must(t, q.Cancel(tReview))
		if q.Status() != domain.StatusCancelled || !q.Status().Closed() {
			t.Fatalf("status %s", q.Status())
		}
		if e := lastEvent[domain.QuoteCancelled](t, q.Changes()); !e.CancelledAt.Equal(tReview) {
			t.Fatalf("QuoteCancelled = %+v", e)
		}
	})
}

func TestOpenChangeQuote(t *testing.T) {
	t.Parallel()
	t.Run("another MSP's customer is not found", func(t *testing.T) {
		t.Parallel()
		q, err := domain.OpenChangeQuote(quoteID, contoso(t), "Tailspin IT Partners", kim, t0)
		assertCode(t, err, domain.ErrNotFound)
		if q != nil {
			t.Fatal("returned a quote")
		}
	})
	t.Run("no customer is not found", func(t *testing.T) {
		t.Parallel()
		_, err := domain.OpenChangeQuote(quoteID, nil, mspName, alex, t0)
		assertCode(t, err, domain.ErrNotFound)
	})
	t.Run("nil quote id", func(t *testing.T) {
		t.Parallel()
		if q, err := domain.OpenChangeQuote(uuid.Nil, contoso(t), mspName, alex, t0); err == nil || q != nil {
			t.Fatalf("OpenChangeQuote(uuid.Nil) = %v, %v", q, err)
		}
	})
	t.Run("the baseline is a copy", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		q := openQuote(t, c, quoteID)
		must(t, q.ChangeSeats(fixtureCatalog(t), emailSec, 700))
		if c.Lines()[0].Seats != 682 || len(c.Changes()) != 0 {
			t.Fatal("a quote edit changed the customer")
		}
	})
}

// The Change Order Summary is a read model handed to the HTTP layer; the
// frozen review lines behind it (which Submit sends to billing) must not
// change when a caller edits what Summary returned.
func TestSummaryCannotChangeTheFrozenReview(t *testing.T) {
	t.Parallel()
	c := contoso(t)
	q := reviewed(t, c, true)
	s, err := q.Summary()
	must(t, err)
	s.Lines[0].CurrentQuantity = 1
	s.Lines[0].CurrentPayment = domain.MustMoney("0.01")

	again, err := q.Summary()
	must(t, err)
	if again.Lines[0].CurrentQuantity != 700 || again.Lines[0].CurrentPayment.String() != "2240.00" {
		t.Fatalf("after editing a returned Summary, the review says %d seats for %s", again.Lines[0].CurrentQuantity, again.Lines[0].CurrentPayment)
	}
	must(t, q.Submit(c, alex, tSubmit))
	if got := lastEvent[domain.OrderSubmitted](t, q.Changes()).Lines[0].CurrentQuantity; got != 700 {
		t.Fatalf("OrderSubmitted carries %d seats, want the reviewed 700", got)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	for _, st := range domain.Statuses {
		got, err := domain.ParseStatus(st.String())
		must(t, err)
		if got != st {
			t.Errorf("ParseStatus(%q) = %s", st, got)
		}
		if b, _ := json.Marshal(st); string(b) != `"`+st.String()+`"` {
			t.Errorf("JSON of %s = %s", st, b)
		}
		if want := st == domain.StatusSubmitted || st == domain.StatusCancelled; st.Closed() != want {
			t.Errorf("%s.Closed() = %t", st, st.Closed())
		}
	}
	var words []string
	for _, st := range domain.Statuses {
		words = append(words, st.String())
	}
	if want := []string{"draft", "saved", "reviewed", "submitted", "cancelled"}; !slices.Equal(words, want) {
		t.Errorf("Statuses = %v, want the contract's %v", words, want)
	}
	if _, err := domain.ParseStatus("open"); err == nil {
		t.Error("ParseStatus(open) succeeded")
	}
}

// TestRehydrationMatchesLiveAggregate replays a long story: after every
// command, the quote loaded from its stored (encoded, decoded) events shows
// exactly what the live aggregate shows, and decides the same.
func TestRehydrationMatchesLiveAggregate(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	c := contoso(t)
	live := openQuote(t, c, quoteID)
	steps := []struct {
		name string
		cmd  func(*domain.ChangeQuote, *domain.Customer) error
	}{
		{"raise", func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.ChangeSeats(cat, emailSec, 650+50) }},
		{"add awareness", func(q *domain.ChangeQuote, _ *domain.Customer) error {
			return q.AddProduct(cat, awareness, month12, 700)
		}},
		{"add dmarc", func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.AddProduct(cat, dmarc, month12, 2) }},
		{"save", func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.Save(t0) }},
		{"dmarc seats", func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.ChangeSeats(cat, dmarc, 3) }},
		{"raise archive", func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.ChangeSeats(cat, archive, 700) }},
		{"review", func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.Review(tReview) }},
		{"remove dmarc", func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.RemoveProduct(dmarc) }},
		{"archive back", func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.ChangeSeats(cat, archive, 682) }},
		{"review again", func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.Review(tReview.Add(time.Minute)) }},
		{"acknowledge", func(q *domain.ChangeQuote, _ *domain.Customer) error { return q.Acknowledge(true, true, sam, tAck) }},
		{"submit", func(q *domain.ChangeQuote, c *domain.Customer) error { return q.Submit(c, alex, tSubmit) }},
	}
	for _, step := range steps {
		// The loaded quote decides the same events as the live one.
		loaded, err := domain.LoadChangeQuote(roundTrip(t, live.Changes()))
		must(t, err)
		before := len(live.Changes())
		must(t, step.cmd(live, c))
		must(t, step.cmd(loaded, contoso(t)))
		if got, want := jsonOf(t, loaded.Changes()), jsonOf(t, live.Changes()[before:]); got != want {
			t.Fatalf("%s: loaded quote decided\n%s\nlive decided\n%s", step.name, got, want)
		}

		// And a quote loaded after the step shows the same.
		loaded, err = domain.LoadChangeQuote(roundTrip(t, live.Changes()))
		must(t, err)
		if loaded.Version() != live.Version() || loaded.ExpectedVersion() != live.Version() || len(loaded.Changes()) != 0 {
			t.Fatalf("%s: loaded version %d expected %d changes %d; live version %d", step.name,
				loaded.Version(), loaded.ExpectedVersion(), len(loaded.Changes()), live.Version())
		}
		if loaded.Status() != live.Status() || loaded.ID() != live.ID() || loaded.BaselineVersion() != live.BaselineVersion() {
			t.Fatalf("%s: loaded %s/%s/%d, live %s/%s/%d", step.name, loaded.Status(), loaded.ID(), loaded.BaselineVersion(),
				live.Status(), live.ID(), live.BaselineVersion())
		}
		if got, want := jsonOf(t, loaded.Preview()), jsonOf(t, live.Preview()); got != want {
			t.Fatalf("%s: preview\nloaded %s\nlive   %s", step.name, got, want)
		}
		ls, lerr := loaded.Summary()
		vs, verr := live.Summary()
		if (lerr == nil) != (verr == nil) {
			t.Fatalf("%s: summary errors differ: loaded %v, live %v", step.name, lerr, verr)
		}
		if got, want := jsonOf(t, ls), jsonOf(t, vs); got != want {
			t.Fatalf("%s: summary\nloaded %s\nlive   %s", step.name, got, want)
		}
	}
	if live.Status() != domain.StatusSubmitted || live.Version() != 13 {
		t.Fatalf("story ended %s at version %d", live.Status(), live.Version())
	}
	s, err := live.Summary()
	must(t, err)
	want := []string{
		"EMAIL-SEC|Email Security Cloud Gateway|12 Month|682|700|3.25|3.20|2216.50|2240.00|true",
		"ARCHIVE|Cloud Archive|12 Month|682|682|1.65|1.65|1125.30|1125.30|true",
		"AWARENESS|Security Awareness Training|12 Month|0|700|0.00|1.25|0.00|875.00|true",
	}
	if got := orderLineStrings(s.Lines); !slices.Equal(got, want) {
		t.Fatalf("final summary\n got %q\nwant %q", got, want)
	}
}

func TestLoadChangeQuoteRefusals(t *testing.T) {
	t.Parallel()
	opened := openQuote(t, contoso(t), quoteID).Changes()[0]
	t.Run("no events is not found", func(t *testing.T) {
		t.Parallel()
		for _, h := range [][]domain.Event{nil, {}} {
			q, err := domain.LoadChangeQuote(h)
			assertCode(t, err, domain.ErrNotFound)
			if q != nil {
				t.Fatal("returned a quote")
			}
		}
	})
	bad := map[string][]domain.Event{
		"does not start with ChangeQuoteOpened": {domain.QuoteSaved{SavedAt: t0}},
		"a customer event in a quote stream":    {opened, domain.CustomerOnboarded{CustomerID: "cust-contoso"}},
		"seats of a product the quote lacks":    {opened, domain.SeatsChanged{ProductCode: dmarc, NewSeats: 3}},
	}
	for name, h := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if q, err := domain.LoadChangeQuote(h); err == nil || q != nil {
				t.Fatalf("LoadChangeQuote = %v, %v; want an error", q, err)
			}
		})
	}
}

type unregisteredEvent struct{}

func (unregisteredEvent) EventType() string { return "SomethingHappened" }

func TestEventCodec(t *testing.T) {
	t.Parallel()
	want := map[string]int{
		"CustomerOnboarded": 1, "SubscriptionAmended": 1, "ChangeQuoteOpened": 1, "ProductAdded": 1,
		"ProductRemoved": 1, "SeatsChanged": 1, "QuoteSaved": 1, "QuoteCancelled": 1,
		"OrderReviewed": 1, "AcknowledgementsGiven": 1, "OrderSubmitted": 2,
	}
	got := domain.EventTypes()
	if len(got) != len(want) {
		t.Fatalf("EventTypes() = %v, want %v", got, want)
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("EventTypes()[%s] = %d, want %d", name, got[name], v)
		}
	}

	t.Run("every type round trips", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		q := seedQuote(t, c, quoteID)
		must(t, q.RemoveProduct(awareness))
		must(t, q.Save(t0))
		must(t, q.Review(tReview))
		must(t, q.Acknowledge(true, true, sam, tAck))
		must(t, q.Submit(c, alex, tSubmit))
		cancelled := openQuote(t, c, quote2)
		must(t, cancelled.Cancel(t0))
		all := append(append(append([]domain.Event{mustOnboardedEvent(t)}, c.Changes()...), q.Changes()...), cancelled.Changes()...)
		seen := map[string]bool{}
		for _, e := range roundTrip(t, all) {
			seen[e.EventType()] = true
		}
		for name := range want {
			if !seen[name] {
				t.Errorf("no %s was produced and round-tripped", name)
			}
		}
	})
	t.Run("encode an unregistered type", func(t *testing.T) {
		t.Parallel()
		if _, _, _, err := domain.EncodeEvent(unregisteredEvent{}); err == nil {
			t.Fatal("EncodeEvent of an unregistered type succeeded")
		}
	})
	decodeRefusals := []struct {
		name, typ string
		version   int
		data      string
	}{
		{"unknown type", "SomethingHappened", 1, `{}`},
		{"schema version newer than the code", "SeatsChanged", 2, `{"product_code":"EMAIL-SEC"}`},
		{"schema version 0", "SeatsChanged", 0, `{"product_code":"EMAIL-SEC"}`},
		{"malformed data", "SeatsChanged", 1, `{"product_code":`},
		{"a bad amount", "SeatsChanged", 1, `{"product_code":"EMAIL-SEC","unit_price":"abc"}`},
	}
	for _, tt := range decodeRefusals {
		t.Run("decode refuses "+tt.name, func(t *testing.T) {
			t.Parallel()
			if e, err := domain.DecodeEvent(tt.typ, tt.version, []byte(tt.data)); err == nil {
				t.Fatalf("DecodeEvent = %#v, want an error", e)
			}
		})
	}
}

// errorCases produces every error code the package declares. The test
// below fails when errors.go gains a sentinel or a code without a case here.
var errorCases = map[string]struct {
	sentinel *domain.Error
	produce  func(t *testing.T) error
}{
	"ErrSeatsDecrease": {domain.ErrSeatsDecrease, func(t *testing.T) error {
		return openQuote(t, contoso(t), quoteID).ChangeSeats(fixtureCatalog(t), emailSec, 681)
	}},
	"ErrInvalidSeats": {domain.ErrInvalidSeats, func(t *testing.T) error {
		return openQuote(t, contoso(t), quoteID).AddProduct(fixtureCatalog(t), awareness, month12, 0)
	}},
	"ErrUnknownProduct": {domain.ErrUnknownProduct, func(t *testing.T) error {
		return openQuote(t, contoso(t), quoteID).AddProduct(fixtureCatalog(t), "NOPE", month12, 1)
	}},
	"ErrUnknownTermType": {domain.ErrUnknownTermType, func(t *testing.T) error {
		return openQuote(t, contoso(t), quoteID).AddProduct(fixtureCatalog(t), awareness, "Monthly", 1)
	}},
	"ErrUnknownCurrency": {domain.ErrUnknownCurrency, func(t *testing.T) error {
		_, err := domain.MinorUnits("XYZ")
		return err
	}},
	"ErrCurrencyMismatch": {domain.ErrCurrencyMismatch, func(t *testing.T) error {
		cat, err := domain.NewCatalog([]domain.Product{{Code: "EU", Name: "EU", Currency: "EUR", TermTypes: []string{month12},
			Tiers: []domain.Tier{{TermType: month12, MinSeats: 1, UnitPrice: domain.MustMoney("1")}}}})
		must(t, err)
		return openQuote(t, contoso(t), quoteID).AddProduct(cat, "EU", month12, 1)
	}},
	"ErrProductAlreadyPresent": {domain.ErrProductAlreadyPresent, func(t *testing.T) error {
		return openQuote(t, contoso(t), quoteID).AddProduct(fixtureCatalog(t), emailSec, month12, 700)
	}},
	"ErrProductNotOnSubscription": {domain.ErrProductNotOnSubscription, func(t *testing.T) error {
		return openQuote(t, contoso(t), quoteID).ChangeSeats(fixtureCatalog(t), dmarc, 2)
	}},
	"ErrProductNotAdded": {domain.ErrProductNotAdded, func(t *testing.T) error {
		return openQuote(t, contoso(t), quoteID).RemoveProduct(emailSec)
	}},
	"ErrNothingToReview": {domain.ErrNothingToReview, func(t *testing.T) error {
		return openQuote(t, contoso(t), quoteID).Review(tReview)
	}},
	"ErrNotReviewed": {domain.ErrNotReviewed, func(t *testing.T) error {
		return seedQuote(t, contoso(t), quoteID).Acknowledge(true, true, sam, tAck)
	}},
	"ErrAcknowledgementsMissing": {domain.ErrAcknowledgementsMissing, func(t *testing.T) error {
		return reviewed(t, contoso(t), false).Acknowledge(true, false, sam, tAck)
	}},
	"ErrInvalidCustomer": {domain.ErrInvalidCustomer, func(t *testing.T) error {
		_, err := domain.OnboardCustomer("", "msp-northwind", "X", "USD", nil, t0)
		return err
	}},
	"ErrInvalidProduct": {domain.ErrInvalidProduct, func(t *testing.T) error {
		_, err := domain.Product{Name: "X", Currency: "USD"}.Validate()
		return err
	}},
	"ErrQuoteClosed": {domain.ErrQuoteClosed, func(t *testing.T) error {
		q := openQuote(t, contoso(t), quoteID)
		must(t, q.Cancel(t0))
		return q.Save(t0)
	}},
	"ErrBaselineChanged": {domain.ErrBaselineChanged, func(t *testing.T) error {
		c := contoso(t)
		second := openQuote(t, c, quote2)
		submitSeed(t, c)
		must(t, second.AddProduct(fixtureCatalog(t), dmarc, month12, 1))
		must(t, second.Review(tReview))
		must(t, second.Acknowledge(true, true, sam, tAck))
		return second.Submit(c, sam, tSubmit)
	}},
	"ErrNotFound": {domain.ErrNotFound, func(t *testing.T) error {
		_, err := domain.LoadChangeQuote(nil)
		return err
	}},
}

func TestEveryErrorCodeIsProduced(t *testing.T) {
	t.Parallel()
	sentinels, codes := declaredErrors(t)
	for _, name := range sentinels {
		if _, ok := errorCases[name]; !ok {
			t.Errorf("domain.%s has no case in errorCases: add one that produces it", name)
		}
	}
	covered := map[string]string{}
	for name, tc := range errorCases {
		if !slices.Contains(sentinels, name) {
			t.Errorf("errorCases has %s, which the package does not declare", name)
		}
		if other, dup := covered[tc.sentinel.Code.String()]; dup {
			t.Errorf("%s and %s share the code %s", name, other, tc.sentinel.Code)
		}
		covered[tc.sentinel.Code.String()] = name
	}
	for _, code := range codes {
		if _, ok := covered[code]; !ok {
			t.Errorf("code %q has no sentinel in errorCases", code)
		}
	}
	for name, tc := range errorCases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			assertCode(t, tc.produce(t), tc.sentinel)
		})
	}
}

// declaredErrors reads the package's source for its Err* sentinels and the
// words of its Code values, so that a new one cannot go untested.
func declaredErrors(t *testing.T) (sentinels, codes []string) {
	t.Helper()
	entries, err := os.ReadDir(".")
	must(t, err)
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		must(t, err)
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if strings.HasPrefix(n.Name, "Err") {
						sentinels = append(sentinels, n.Name)
					}
					if !strings.HasPrefix(n.Name, "Code") || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.CompositeLit)
					if !ok || len(lit.Elts) != 1 {
						t.Fatalf("%s is not a Code{\"word\"} literal", n.Name)
					}
					word, err := strconv.Unquote(lit.Elts[0].(*ast.BasicLit).Value)
					must(t, err)
					codes = append(codes, word)
				}
			}
		}
	}
	if len(sentinels) == 0 || len(codes) == 0 {
		t.Fatalf("found %d sentinels and %d codes in the package source", len(sentinels), len(codes))
	}
	return sentinels, codes
}
