package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/shopspring/decimal"
)

// Money is an exact decimal amount that keeps its scale: 3.20 prints as
// "3.20", never "3.2", and travels in JSON as a string. Payments carry the
// currency's minor unit; unit prices carry at least that many places.
type Money struct{ d decimal.Decimal }

// minorUnits lists the currencies the catalog may use, with the number of
// digits of their minor unit (ISO 4217).
var minorUnits = map[string]int32{
	"USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "NZD": 2, "CHF": 2,
	"SEK": 2, "NOK": 2, "DKK": 2, "ZAR": 2, "SGD": 2, "JPY": 0,
}

// MinorUnits returns the digits of a currency's minor unit.
func MinorUnits(currency string) (int32, error) {
	n, ok := minorUnits[currency]
	if !ok {
		return 0, newError(CodeUnknownCurrency, "unknown currency %q", currency)
	}
	return n, nil
}

// ParseMoney reads a decimal string such as "2216.50".
func ParseMoney(s string) (Money, error) {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return Money{}, fmt.Errorf("not a decimal amount: %q", s)
	}
	return Money{d}, nil
}

// MustMoney is ParseMoney for constants in tests and examples.
func MustMoney(s string) Money {
	m, err := ParseMoney(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Zero returns 0 with the currency's minor unit ("0.00").
func Zero(currency string) Money {
	return Money{decimal.New(0, -minorUnits[currency])}
}

// Decimal returns the amount as a decimal.
func (m Money) Decimal() decimal.Decimal { return m.d }

// String prints the amount with its scale: "2240.00", "-2216.50".
func (m Money) String() string {
	var buf [24]byte
	return string(m.appendText(buf[:0]))
}

// appendText appends the amount as String prints it. Amounts whose
// coefficient has at most 18 digits (all that money is) are written from
// the coefficient as an int64, without the allocations of the decimal's
// own formatting, which the others use.
func (m Money) appendText(b []byte) []byte {
	exp := m.d.Exponent()
	if exp > 0 || exp < -18 || m.d.NumDigits() > 18 {
		if exp < 0 {
			return append(b, m.d.StringFixed(-exp)...)
		}
		return append(b, m.d.String()...)
	}
	c := m.d.CoefficientInt64()
	if c < 0 {
		b = append(b, '-')
		c = -c
	}
	if exp == 0 {
		return strconv.AppendInt(b, c, 10)
	}
	var buf [20]byte
	digits := strconv.AppendInt(buf[:0], c, 10)
	places := int(-exp)
	if len(digits) > places {
		b = append(b, digits[:len(digits)-places]...)
		b = append(b, '.')
		return append(b, digits[len(digits)-places:]...)
	}
	b = append(b, '0', '.')
	for range places - len(digits) {
		b = append(b, '0')
	}
	return append(b, digits...)
}

// Add returns m + o.
func (m Money) Add(o Money) Money { return Money{m.d.Add(o.d)} }

// Sub returns m - o.
func (m Money) Sub(o Money) Money { return Money{m.d.Sub(o.d)} }

// Neg returns -m.
func (m Money) Neg() Money { return Money{m.d.Neg()} }

// Sign returns -1, 0 or +1.
func (m Money) Sign() int { return m.d.Sign() }

// Equal reports whether both are the same amount, whatever their scale.
func (m Money) Equal(o Money) bool { return m.d.Equal(o.d) }

// atLeastPlaces gives the amount at least n decimal places ("45" becomes
// "45.00"), never dropping digits it has.
func (m Money) atLeastPlaces(n int32) Money {
	if -m.d.Exponent() >= n {
		return m
	}
	return Money{m.d.Round(n)}
}

// Payment is quantity x unit price, rounded half-up (away from zero) to the
// currency's minor unit. Rounding away from zero makes a negative line the
// exact opposite of the positive one, so -682 and +682 cancel to the cent.
func Payment(quantity int, unitPrice Money, currency string) Money {
	places := minorUnits[currency]
	return Money{unitPrice.d.Mul(decimal.NewFromInt(int64(quantity))).Round(places)}
}

// MarshalJSON writes the amount as a JSON string.
func (m Money) MarshalJSON() ([]byte, error) {
	// A decimal's text is digits, a sign and a point: nothing to escape.
	return appendMoneyJSON(make([]byte, 0, 16), m), nil
}

// UnmarshalJSON reads a JSON string (or, leniently, a JSON number).
func (m *Money) UnmarshalJSON(b []byte) error {
	var s string
	switch {
	case len(b) > 0 && b[0] != '"':
		s = string(b)
	case len(b) >= 2 && b[len(b)-1] == '"' && !bytes.ContainsAny(b[1:len(b)-1], `\"`):
		// A string without escapes, as amounts are written: its text is
		// between the quotes (no second decode of the JSON).
		s = string(b[1 : len(b)-1])
	default:
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("money: %w", err)
		}
	}
	v, err := ParseMoney(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}
