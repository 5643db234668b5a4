package domain_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/domain"
)

// fixtureProductsJSON is the "products" part of
// shared/fixtures/import-example.json, copied verbatim so that the tests
// also exercise the catalog's JSON form.
const fixtureProductsJSON = `[
  {
    "code": "EMAIL-SEC", "name": "Email Security Cloud Gateway", "per_user": true, "currency": "USD",
    "term_types": ["Monthly", "12 Month", "36 Month"],
    "tiers": [
      {"term_type": "Monthly",  "min_seats": 1,   "unit_price": "3.90"},
      {"term_type": "Monthly",  "min_seats": 500, "unit_price": "3.60"},
      {"term_type": "12 Month", "min_seats": 1,   "unit_price": "3.50"},
      {"term_type": "12 Month", "min_seats": 500, "unit_price": "3.25"},
      {"term_type": "12 Month", "min_seats": 700, "unit_price": "3.20"},
      {"term_type": "36 Month", "min_seats": 1,   "unit_price": "3.15"},
      {"term_type": "36 Month", "min_seats": 500, "unit_price": "2.95"}
    ]
  },
  {
    "code": "ARCHIVE", "name": "Cloud Archive", "per_user": true, "currency": "USD",
    "term_types": ["12 Month", "36 Month"],
    "tiers": [
      {"term_type": "12 Month", "min_seats": 1,   "unit_price": "1.80"},
      {"term_type": "12 Month", "min_seats": 250, "unit_price": "1.65"},
      {"term_type": "36 Month", "min_seats": 1,   "unit_price": "1.55"}
    ]
  },
  {
    "code": "AWARENESS", "name": "Security Awareness Training", "per_user": true, "currency": "USD",
    "term_types": ["12 Month"],
    "tiers": [
      {"term_type": "12 Month", "min_seats": 1,    "unit_price": "1.25"},
      {"term_type": "12 Month", "min_seats": 1000, "unit_price": "0.99"}
    ]
  },
  {
    "code": "DMARC", "name": "DMARC Analyzer (per domain)", "per_user": false, "currency": "USD",
    "term_types": ["12 Month"],
    "tiers": [
      {"term_type": "12 Month", "min_seats": 1, "unit_price": "45.00"}
    ]
  }
]`

// Names from the fixture.
const (
	mspName     = "Northwind Managed Services"
	emailSec    = "EMAIL-SEC"
	emailSecNm  = "Email Security Cloud Gateway"
	archive     = "ARCHIVE"
	awareness   = "AWARENESS"
	awarenessNm = "Security Awareness Training"
	dmarc       = "DMARC"
	month12     = "12 Month"
)

var (
	t0      = time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	clock   = domain.FixedClock{T: t0}
	alex    = domain.Actor{MSPID: "msp-northwind", UserID: "u-alex"}
	sam     = domain.Actor{MSPID: "msp-northwind", UserID: "u-sam"}
	kim     = domain.Actor{MSPID: "msp-tailspin", UserID: "u-kim"}
	quoteID = uuid.MustParse("0195a1d2-7c3e-7f00-8000-000000000001")
	quote2  = uuid.MustParse("0195a1d2-7c3e-7f00-8000-000000000002")
)

func fixtureProducts(t testing.TB) []domain.Product {
	t.Helper()
	var ps []domain.Product
	if err := json.Unmarshal([]byte(fixtureProductsJSON), &ps); err != nil {
		t.Fatalf("fixture products: %v", err)
	}
	return ps
}

// fixtureCatalog is the catalog of the import fixture.
func fixtureCatalog(t testing.TB) *domain.Catalog {
	t.Helper()
	c, err := domain.NewCatalog(fixtureProducts(t))
	if err != nil {
		t.Fatalf("NewCatalog: %v", err)
	}
	return c
}

// contoso is the fixture's Contoso Ltd as the application loads it from its
// stored stream: version 1, nothing recorded yet.
func contoso(t testing.TB) *domain.Customer {
	t.Helper()
	c, err := domain.OnboardCustomer("cust-contoso", "msp-northwind", "Contoso Ltd", "USD", contosoLines(), t0)
	if err != nil {
		t.Fatalf("OnboardCustomer: %v", err)
	}
	loaded, err := domain.LoadCustomer(roundTrip(t, c.Changes()))
	if err != nil {
		t.Fatalf("LoadCustomer: %v", err)
	}
	return loaded
}

func contosoLines() []domain.Line {
	return []domain.Line{
		{ProductCode: emailSec, ProductName: emailSecNm, TermType: month12, PerUser: true, Seats: 682, UnitPrice: domain.MustMoney("3.25")},
		{ProductCode: archive, ProductName: "Cloud Archive", TermType: month12, PerUser: true, Seats: 682, UnitPrice: domain.MustMoney("1.65")},
	}
}

// openQuote opens a change quote on the customer as Alex of Northwind.
func openQuote(t testing.TB, c *domain.Customer, id uuid.UUID) *domain.ChangeQuote {
	t.Helper()
	q, err := domain.OpenChangeQuote(id, c, mspName, alex, clock.Now())
	if err != nil {
		t.Fatalf("OpenChangeQuote: %v", err)
	}
	return q
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// assertCode checks err both ways a caller matches it: errors.Is against the
// sentinel and errors.As to *domain.Error with the same Code.
func assertCode(t testing.TB, err error, want *domain.Error) *domain.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %s", want.Code)
	}
	if !errors.Is(err, want) {
		t.Fatalf("errors.Is(%v, Err{%s}) = false", err, want.Code)
	}
	var de *domain.Error
	if !errors.As(err, &de) {
		t.Fatalf("errors.As(%v, *domain.Error) = false", err)
	}
	if de.Code != want.Code {
		t.Fatalf("Code = %s, want %s", de.Code, want.Code)
	}
	if de.Detail == "" {
		t.Errorf("%s refusal has no Detail: a caller would see an empty message", de.Code)
	}
	return de
}

// mustRefuse runs a command that must be refused with want and checks that
// the quote recorded nothing and did not change.
func mustRefuse(t testing.TB, q *domain.ChangeQuote, want *domain.Error, cmd func() error) *domain.Error {
	t.Helper()
	n, v, st, before := len(q.Changes()), q.Version(), q.Status(), jsonOf(t, q.Preview())
	de := assertCode(t, cmd(), want)
	if got := len(q.Changes()); got != n {
		t.Errorf("refused %s recorded %d event(s)", want.Code, got-n)
	}
	if q.Version() != v {
		t.Errorf("refused %s moved Version %d -> %d", want.Code, v, q.Version())
	}
	if q.Status() != st {
		t.Errorf("refused %s moved Status %s -> %s", want.Code, st, q.Status())
	}
	if after := jsonOf(t, q.Preview()); after != before {
		t.Errorf("refused %s changed the preview:\nbefore %s\nafter  %s", want.Code, before, after)
	}
	return de
}

// roundTrip stores events the way the event store does (EncodeEvent) and
// reads them back (DecodeEvent); re-encoding must give the same bytes.
func roundTrip(t testing.TB, events []domain.Event) []domain.Event {
	t.Helper()
	out := make([]domain.Event, 0, len(events))
	for _, e := range events {
		typ, ver, data, err := domain.EncodeEvent(e)
		if err != nil {
			t.Fatalf("EncodeEvent(%s): %v", e.EventType(), err)
		}
		if typ != e.EventType() || ver < 1 {
			t.Fatalf("EncodeEvent(%s) = type %q version %d", e.EventType(), typ, ver)
		}
		back, err := domain.DecodeEvent(typ, ver, data)
		if err != nil {
			t.Fatalf("DecodeEvent(%s): %v", typ, err)
		}
		if back.EventType() != typ {
			t.Fatalf("DecodeEvent(%s) gave a %s", typ, back.EventType())
		}
		if got, want := fmt.Sprintf("%+v", back), fmt.Sprintf("%+v", e); got != want {
			t.Fatalf("%s loses data in storage:\nstored %s\nread   %s", typ, want, got)
		}
		if _, _, again, _ := domain.EncodeEvent(back); string(again) != string(data) {
			t.Fatalf("%s does not survive a round trip:\nfirst  %s\nsecond %s", typ, data, again)
		}
		out = append(out, back)
	}
	return out
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%T): %v", v, err)
	}
	return string(b)
}

// lastEvent returns the quote's last recorded event, which must be a T.
func lastEvent[T domain.Event](t testing.TB, changes []domain.Event) T {
	t.Helper()
	if len(changes) == 0 {
		var zero T
		t.Fatalf("no event recorded, want %s", zero.EventType())
	}
	e, ok := changes[len(changes)-1].(T)
	if !ok {
		var zero T
		t.Fatalf("last event is %s, want %s", changes[len(changes)-1].EventType(), zero.EventType())
	}
	return e
}

// orderLineStrings renders order lines as
// "code|product|term|priorQ|currentQ|priorPrice|currentPrice|priorPay|currentPay|perUser".
func orderLineStrings(lines []domain.OrderLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = fmt.Sprintf("%s|%s|%s|%d|%d|%s|%s|%s|%s|%t", l.ProductCode, l.Product, l.TermType,
			l.PriorQuantity, l.CurrentQuantity, l.PriorUnitPrice, l.CurrentUnitPrice, l.PriorPayment, l.CurrentPayment, l.PerUser)
	}
	return out
}

// pricedStrings renders preview lines as "code|name|term|seats|price|payment".
func pricedStrings(lines []domain.PricedLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = fmt.Sprintf("%s|%s|%s|%d|%s|%s", l.ProductCode, l.ProductName, l.TermType, l.Seats, l.UnitPrice, l.MonthlyPayment)
	}
	return out
}

// changeStrings renders change lines as "code|name|term|quantity|price|payment".
func changeStrings(lines []domain.ChangeLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = fmt.Sprintf("%s|%s|%s|%d|%s|%s", l.ProductCode, l.ProductName, l.TermType, l.Quantity, l.UnitPrice, l.MonthlyPayment)
	}
	return out
}

// lineStrings renders subscription lines as "code|name|term|perUser|seats|price".
func lineStrings(lines []domain.Line) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = fmt.Sprintf("%s|%s|%s|%t|%d|%s", l.ProductCode, l.ProductName, l.TermType, l.PerUser, l.Seats, l.UnitPrice)
	}
	return out
}
