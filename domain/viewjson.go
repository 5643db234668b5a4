package domain

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/internal/jsontext"
)

// The read models store the views (Preview, Summary, a customer's priced
// lines) as the JSON that encoding/json makes of them, and a rebuild makes
// that JSON for every quote and customer: the Append functions below write
// the same bytes into a buffer the caller reuses, without reflection.
// viewjson_test.go and FuzzViewJSON compare them with json.Marshal. Where
// encoding/json would fail (a time outside RFC 3339's years), they hand the
// view to json.Marshal, so that the error is its own.

// AppendJSON appends json.Marshal(p) to b.
func (p Preview) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"quote_id":`...)
	b = appendUUID(b, p.QuoteID)
	b = append(b, `,"customer":{"id":`...)
	b = jsontext.AppendString(b, p.Customer.ID)
	b = append(b, `,"name":`...)
	b = jsontext.AppendString(b, p.Customer.Name)
	b = append(b, `},"status":`...)
	b = jsontext.AppendString(b, p.Status.s)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, p.Version, 10)
	b = append(b, `,"currency":`...)
	b = jsontext.AppendString(b, p.Currency)
	b = append(b, `,"added_products":`...)
	b = appendPricedLines(b, p.AddedProducts)
	b = append(b, `,"current_products":`...)
	b = appendPricedLines(b, p.CurrentProducts)
	b = append(b, `,"changes_to_existing_products":`...)
	if p.ChangesToExistingProducts == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, l := range p.ChangesToExistingProducts {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"product_code":`...)
			b = jsontext.AppendString(b, l.ProductCode)
			b = append(b, `,"product_name":`...)
			b = jsontext.AppendString(b, l.ProductName)
			b = append(b, `,"term_type":`...)
			b = jsontext.AppendString(b, l.TermType)
			b = append(b, `,"quantity":`...)
			b = strconv.AppendInt(b, int64(l.Quantity), 10)
			b = append(b, `,"unit_price":`...)
			b = appendMoneyJSON(b, l.UnitPrice)
			b = append(b, `,"monthly_payment":`...)
			b = appendMoneyJSON(b, l.MonthlyPayment)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"prior_monthly_total":`...)
	b = appendMoneyJSON(b, p.PriorMonthlyTotal)
	b = append(b, `,"new_monthly_total":`...)
	b = appendMoneyJSON(b, p.NewMonthlyTotal)
	b = append(b, `,"monthly_difference":`...)
	b = appendMoneyJSON(b, p.MonthlyDifference)
	return append(b, '}'), nil
}

// AppendJSON appends json.Marshal(s) to b.
func (s Summary) AppendJSON(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, `{"quote_id":`...)
	b = appendUUID(b, s.QuoteID)
	b = append(b, `,"status":`...)
	b = jsontext.AppendString(b, s.Status.s)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, s.Version, 10)
	b = append(b, `,"currency":`...)
	b = jsontext.AppendString(b, s.Currency)
	b = append(b, `,"msp":{"id":`...)
	b = jsontext.AppendString(b, s.MSP.ID)
	b = append(b, `,"name":`...)
	b = jsontext.AppendString(b, s.MSP.Name)
	b = append(b, `},"company_name":`...)
	b = jsontext.AppendString(b, s.CompanyName)
	b = append(b, `,"total_users":`...)
	b = strconv.AppendInt(b, int64(s.TotalUsers), 10)
	b = append(b, `,"lines":`...)
	if s.Lines == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, l := range s.Lines {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"product_code":`...)
			b = jsontext.AppendString(b, l.ProductCode)
			b = append(b, `,"product":`...)
			b = jsontext.AppendString(b, l.Product)
			b = append(b, `,"term_type":`...)
			b = jsontext.AppendString(b, l.TermType)
			b = append(b, `,"per_user":`...)
			b = strconv.AppendBool(b, l.PerUser)
			b = append(b, `,"prior_quantity":`...)
			b = strconv.AppendInt(b, int64(l.PriorQuantity), 10)
			b = append(b, `,"current_quantity":`...)
			b = strconv.AppendInt(b, int64(l.CurrentQuantity), 10)
			b = append(b, `,"prior_unit_price":`...)
			b = appendMoneyJSON(b, l.PriorUnitPrice)
			b = append(b, `,"current_unit_price":`...)
			b = appendMoneyJSON(b, l.CurrentUnitPrice)
			b = append(b, `,"prior_payment":`...)
			b = appendMoneyJSON(b, l.PriorPayment)
			b = append(b, `,"current_payment":`...)
			b = appendMoneyJSON(b, l.CurrentPayment)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"prior_monthly_total":`...)
	b = appendMoneyJSON(b, s.PriorMonthlyTotal)
	b = append(b, `,"new_monthly_total":`...)
	b = appendMoneyJSON(b, s.NewMonthlyTotal)
	b = append(b, `,"acknowledgements":`...)
	ok, okAt := true, true
	if a := s.Acknowledgements; a == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"msa_governs_order":`...)
		b = strconv.AppendBool(b, a.MSAGovernsOrder)
		b = append(b, `,"authorized_to_order":`...)
		b = strconv.AppendBool(b, a.AuthorizedToOrder)
		b = append(b, `,"by":`...)
		b = jsontext.AppendString(b, a.By)
		b = append(b, `,"at":`...)
		b, ok = appendTimeJSON(b, a.At)
		b = append(b, '}')
	}
	b = append(b, `,"reviewed_at":`...)
	b, okAt = appendTimeJSON(b, s.ReviewedAt)
	ok = ok && okAt
	b = append(b, `,"submitted_at":`...)
	if s.SubmittedAt == nil {
		b = append(b, "null"...)
	} else {
		b, okAt = appendTimeJSON(b, *s.SubmittedAt)
		ok = ok && okAt
	}
	b = append(b, '}')
	if !ok {
		return marshalInto(b[:start], s)
	}
	return b, nil
}

// AppendPricedLinesJSON appends json.Marshal(lines) to b.
func AppendPricedLinesJSON(b []byte, lines []PricedLine) ([]byte, error) {
	return appendPricedLines(b, lines), nil
}

func appendPricedLines(b []byte, lines []PricedLine) []byte {
	if lines == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, l := range lines {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"product_code":`...)
		b = jsontext.AppendString(b, l.ProductCode)
		b = append(b, `,"product_name":`...)
		b = jsontext.AppendString(b, l.ProductName)
		b = append(b, `,"term_type":`...)
		b = jsontext.AppendString(b, l.TermType)
		b = append(b, `,"seats":`...)
		b = strconv.AppendInt(b, int64(l.Seats), 10)
		b = append(b, `,"unit_price":`...)
		b = appendMoneyJSON(b, l.UnitPrice)
		b = append(b, `,"monthly_payment":`...)
		b = appendMoneyJSON(b, l.MonthlyPayment)
		b = append(b, '}')
	}
	return append(b, ']')
}

// marshalInto appends json.Marshal(v) to b, or gives its error.
func marshalInto(b []byte, v any) ([]byte, error) {
	out, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, out...), nil
}

// appendTimeJSON appends t as time.Time.MarshalJSON writes it; ok is false
// when t cannot be written, for the caller to let json.Marshal give the
// error.
func appendTimeJSON(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	out, err := t.AppendText(b)
	if err != nil {
		return b, false
	}
	return append(out, '"'), true
}

// appendUUID appends the id as encoding/json writes it: its MarshalText,
// quoted (hex digits and dashes need no escape).
func appendUUID(b []byte, u uuid.UUID) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return append(b, '"')
}

// appendMoneyJSON appends Money.MarshalJSON's bytes.
func appendMoneyJSON(b []byte, m Money) []byte {
	b = append(b, '"')
	b = m.appendText(b)
	return append(b, '"')
}
