package domain_test

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/domain"
)

// sameJSON fails unless the append-style encoder gives json.Marshal's
// bytes, or json.Marshal's error, for v, appending after what the buffer
// held.
func sameJSON(t *testing.T, v any, appendJSON func([]byte) ([]byte, error)) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	prefix := []byte("prefix:")
	got, gotErr := appendJSON(prefix[:len(prefix):len(prefix)])
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("%T: error %v, json.Marshal's %v", v, gotErr, wantErr)
	}
	if wantErr != nil {
		return
	}
	if string(got[:len(prefix)]) != string(prefix) || string(got[len(prefix):]) != string(want) {
		t.Fatalf("%T:\nappended %s\nMarshal  prefix:%s", v, got, want)
	}
}

// everyQuote is quotes in every status the domain's stories leave them
// in, and the customers they amend.
func everyQuote(t testing.TB) ([]*domain.ChangeQuote, []*domain.Customer) {
	t.Helper()
	cat := fixtureCatalog(t)
	var quotes []*domain.ChangeQuote
	c := contoso(t)
	quotes = append(quotes, openQuote(t, c, quoteID), seedQuote(t, c, quoteID), reviewed(t, c, false), reviewed(t, c, true))
	saved := reviewed(t, c, true)
	must(t, saved.Save(tAck))
	quotes = append(quotes, saved)
	cancelled := openQuote(t, c, quote2)
	must(t, cancelled.AddProduct(cat, dmarc, month12, 3))
	must(t, cancelled.ChangeSeats(cat, archive, 700))
	must(t, cancelled.Cancel(tAck))
	quotes = append(quotes, cancelled)
	amended := contoso(t)
	quotes = append(quotes, submitSeed(t, amended))
	empty, err := domain.OnboardCustomer("cust-empty", "msp-northwind", "Empty", "USD", []domain.Line{}, t0)
	must(t, err)
	yen, err := domain.OnboardCustomer("cust-yen", "msp-東京", "Émile & <Söhne> \u2028 \"Ltd\"\t\x01", "JPY", []domain.Line{
		{ProductCode: "P-日本", ProductName: "Sécurité\u2029", TermType: "12 Month", PerUser: true, Seats: 7, UnitPrice: domain.MustMoney("1200")},
	}, t0)
	must(t, err)
	return quotes, []*domain.Customer{c, amended, empty, yen}
}

// The views' JSON written by AppendJSON is json.Marshal's, byte for byte,
// for quotes in every status and for customers.
func TestViewJSONIsEncodingJSONs(t *testing.T) {
	t.Parallel()
	quotes, customers := everyQuote(t)
	for _, q := range quotes {
		p := q.Preview()
		sameJSON(t, p, p.AppendJSON)
		if s, err := q.Summary(); err == nil {
			sameJSON(t, s, s.AppendJSON)
		}
	}
	for _, c := range customers {
		lines := c.PricedLines()
		sameJSON(t, lines, func(b []byte) ([]byte, error) { return domain.AppendPricedLinesJSON(b, lines) })
	}
	var nilLines []domain.PricedLine
	sameJSON(t, nilLines, func(b []byte) ([]byte, error) { return domain.AppendPricedLinesJSON(b, nilLines) })
}

// fuzzView builds a Preview and a Summary out of a fuzzer's values: any
// text in every string, any amount and any time.
func fuzzView(text string, n int64, amount string, unixNano int64, zone int, status uint8, nils uint8) (domain.Preview, domain.Summary) {
	m, err := domain.ParseMoney(amount)
	if err != nil {
		m = domain.Money{}
	}
	at := time.Unix(0, unixNano).In(time.FixedZone("", zone%(30*3600)))
	if nils&16 != 0 {
		// Far outside RFC 3339's years: json.Marshal fails.
		at = at.AddDate(int(n%20000), 0, 0)
	}
	st := domain.Statuses[int(status)%len(domain.Statuses)]
	id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(text))
	priced := []domain.PricedLine{{ProductCode: text, ProductName: text + "x", TermType: text, Seats: int(n), UnitPrice: m, MonthlyPayment: m.Neg()}}
	change := []domain.ChangeLine{{ProductCode: text, ProductName: text, TermType: text, Quantity: int(-n), UnitPrice: m, MonthlyPayment: m}}
	order := []domain.OrderLine{{ProductCode: text, Product: text, TermType: text, PerUser: n%2 == 0, PriorQuantity: int(n), CurrentQuantity: int(n / 3),
		PriorUnitPrice: m, CurrentUnitPrice: m.Add(m), PriorPayment: domain.Money{}, CurrentPayment: m}}
	p := domain.Preview{QuoteID: id, Customer: domain.CustomerRef{ID: text, Name: text}, Status: st, Version: n, Currency: text,
		AddedProducts: priced, CurrentProducts: priced, ChangesToExistingProducts: change,
		PriorMonthlyTotal: m, NewMonthlyTotal: m.Neg(), MonthlyDifference: m.Sub(m)}
	s := domain.Summary{QuoteID: id, Status: st, Version: n, Currency: text, MSP: domain.MSPRef{ID: text, Name: text}, CompanyName: text,
		TotalUsers: int(n), Lines: order, PriorMonthlyTotal: m, NewMonthlyTotal: m, ReviewedAt: at,
		Acknowledgements: &domain.Acknowledgements{MSAGovernsOrder: true, AuthorizedToOrder: n%3 == 0, By: text, At: at}, SubmittedAt: &at}
	if nils&1 != 0 {
		p.AddedProducts, p.CurrentProducts, p.ChangesToExistingProducts = nil, nil, nil
	}
	if nils&2 != 0 {
		s.Lines = nil
	}
	if nils&4 != 0 {
		s.Acknowledgements = nil
	}
	if nils&8 != 0 {
		s.SubmittedAt = nil
	}
	return p, s
}

// FuzzViewJSON: for any text, number, amount and time, the views' JSON
// written by AppendJSON is json.Marshal's, and an amount's String is
// what the decimal's own formatting gives.
//
//	go test -run '^$' -fuzz '^FuzzViewJSON$' -fuzztime 2m ./domain/
func FuzzViewJSON(f *testing.F) {
	f.Add("Contoso Ltd", int64(682), "2216.50", int64(1742000000000000000), 0, uint8(0), uint8(0))
	f.Add("Émile & <Söhne> \u2028\u2029 \"x\"\\\t\n\r\b\f\x01\x7f\xff\xe2\x80", int64(-1), "-0.05", int64(-1), 3600, uint8(1), uint8(1))
	f.Add("", int64(math.MaxInt64), "123456789012345678.9", int64(math.MinInt64), -7200, uint8(2), uint8(30))
	f.Add("a", int64(math.MinInt64), "1e3", int64(0), 86399, uint8(3), uint8(16))
	f.Add("b", int64(0), "0.0000000000000000001", int64(1), 0, uint8(4), uint8(6))
	f.Add("c", int64(9999), "-99999999999999999999999.99", int64(999999999), 59, uint8(4), uint8(8))
	f.Add("d", int64(1), "45", int64(0), 0, uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, text string, n int64, amount string, unixNano int64, zone int, status uint8, nils uint8) {
		p, s := fuzzView(text, n, amount, unixNano, zone, status, nils)
		sameJSON(t, p, p.AppendJSON)
		sameJSON(t, s, s.AppendJSON)
		sameJSON(t, p.CurrentProducts, func(b []byte) ([]byte, error) { return domain.AppendPricedLinesJSON(b, p.CurrentProducts) })
		if m, err := domain.ParseMoney(amount); err == nil {
			checkMoneyString(t, m)
		}
	})
}

// checkMoneyString compares Money.String with the decimal's own
// formatting, which it was before it wrote small amounts itself.
func checkMoneyString(t *testing.T, m domain.Money) {
	t.Helper()
	d := m.Decimal()
	want := d.String()
	if d.Exponent() < 0 {
		want = d.StringFixed(-d.Exponent())
	}
	if got := m.String(); got != want {
		t.Fatalf("Money(%v).String() = %q, want %q", d, got, want)
	}
	if b, err := m.MarshalJSON(); err != nil || string(b) != `"`+want+`"` {
		t.Fatalf("Money(%v).MarshalJSON() = %s, %v; want %q", d, b, err, want)
	}
}

func TestMoneyStringIsTheDecimals(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"0", "0.00", "-0.00", "0.05", "-0.05", "3.20", "2216.50", "-2216.50", "1200", "45", "-45", "1e3", "1.5e-3", "1E+2",
		"999999999999999999", "-999999999999999999", "9999999999999999.99", "1000000000000000000", "-1000000000000000000",
		"0.000000000000000001", "0.0000000000000000001", "123456789012345678901234567890.12", "9223372036854775807",
		"-9223372036854775808", "0.1234567890123456789", "12.3400",
	} {
		checkMoneyString(t, domain.MustMoney(s))
	}
	checkMoneyString(t, domain.Money{})
	checkMoneyString(t, domain.Zero("JPY"))
	checkMoneyString(t, domain.Zero("USD"))
}

func BenchmarkPreviewJSON(b *testing.B) {
	quotes, _ := everyQuote(b)
	p := quotes[len(quotes)-1].Preview()
	b.Run("Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = p.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
