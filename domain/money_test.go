package domain_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/upsell-dev/upsell/domain"
)

func TestPaymentRoundsHalfAwayFromZeroPerLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		quantity  int
		unitPrice string
		currency  string
		want      string
	}{
		{"half cent rounds up", 3, "0.335", "USD", "1.01"},
		{"negative half cent rounds away from zero", -3, "0.335", "USD", "-1.01"},
		{"just below half rounds down", 1, "0.0049999", "USD", "0.00"},
		{"just below half, negative", -1, "0.0049999", "USD", "0.00"},
		{"exactly half a cent", 1, "0.005", "USD", "0.01"},
		{"exactly half a cent, negative", -1, "0.005", "USD", "-0.01"},
		{"three places", 3, "1.125", "USD", "3.38"},
		{"Contoso email security", 682, "3.25", "USD", "2216.50"},
		{"Contoso email security removed", -682, "3.25", "USD", "-2216.50"},
		{"raised to 700 at the 700 tier", 700, "3.20", "USD", "2240.00"},
		{"price with one place still pays in cents", 700, "3.2", "USD", "2240.00"},
		{"integer price pays in cents", 3, "45", "USD", "135.00"},
		{"Contoso archive", 682, "1.65", "USD", "1125.30"},
		{"zero quantity", 0, "3.25", "USD", "0.00"},
		{"max seats", domain.MaxSeats, "3.25", "USD", "32500000.00"},
		{"EUR", 3, "0.335", "EUR", "1.01"},
		{"JPY has no minor unit", 7, "150", "JPY", "1050"},
		{"JPY half yen rounds up", 3, "0.5", "JPY", "2"},
		{"JPY half yen, negative", -3, "0.5", "JPY", "-2"},
		{"JPY below half", 1, "0.49", "JPY", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := domain.Payment(tt.quantity, domain.MustMoney(tt.unitPrice), tt.currency)
			if got.String() != tt.want {
				t.Errorf("Payment(%d, %s, %s) = %q, want %q", tt.quantity, tt.unitPrice, tt.currency, got, tt.want)
			}
			// Rounding away from zero: -q and +q cancel exactly.
			neg := domain.Payment(-tt.quantity, domain.MustMoney(tt.unitPrice), tt.currency)
			if !neg.Equal(got.Neg()) {
				t.Errorf("Payment(%d) = %s is not the opposite of Payment(%d) = %s", -tt.quantity, neg, tt.quantity, got)
			}
		})
	}
}

func TestMoneyJSONKeepsScale(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"3.20", "2216.50", "-2216.50", "0.00", "45", "45.00", "0.335", "1050", "0.10"} {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			m := domain.MustMoney(s)
			if m.String() != s {
				t.Fatalf("MustMoney(%q).String() = %q", s, m)
			}
			b, err := json.Marshal(m)
			must(t, err)
			if string(b) != `"`+s+`"` {
				t.Fatalf("json.Marshal = %s, want a JSON string %q", b, s)
			}
			var back domain.Money
			must(t, json.Unmarshal(b, &back))
			if back.String() != s {
				t.Fatalf("round trip = %q, want %q", back, s)
			}
		})
	}

	t.Run("inside a struct", func(t *testing.T) {
		t.Parallel()
		in := domain.Tier{TermType: month12, MinSeats: 700, UnitPrice: domain.MustMoney("3.20")}
		b, err := json.Marshal(in)
		must(t, err)
		if want := `{"term_type":"12 Month","min_seats":700,"unit_price":"3.20"}`; string(b) != want {
			t.Fatalf("json = %s, want %s", b, want)
		}
		var out domain.Tier
		must(t, json.Unmarshal(b, &out))
		if out.UnitPrice.String() != "3.20" || out.MinSeats != 700 || out.TermType != month12 {
			t.Fatalf("round trip = %+v", out)
		}
	})

	t.Run("a broken JSON string", func(t *testing.T) {
		t.Parallel()
		var m domain.Money
		if err := m.UnmarshalJSON([]byte(`"3.20`)); err == nil {
			t.Fatalf("UnmarshalJSON of an unterminated string = %s", m)
		}
	})

	t.Run("a JSON string with escapes is read as its text", func(t *testing.T) {
		t.Parallel()
		var m domain.Money
		must(t, json.Unmarshal([]byte(`"\u0033.20"`), &m))
		if m.String() != "3.20" {
			t.Fatalf(`"\u0033.20" read as %q`, m)
		}
		if err := m.UnmarshalJSON([]byte(`"3.20\""`)); err == nil {
			t.Fatalf(`UnmarshalJSON of "3.20\"" = %s, want an error`, m)
		}
	})

	t.Run("a JSON number is read leniently and keeps its scale", func(t *testing.T) {
		t.Parallel()
		var m domain.Money
		must(t, json.Unmarshal([]byte(`3.20`), &m))
		if m.String() != "3.20" {
			t.Fatalf("3.20 read as %q", m)
		}
	})
}

func TestMoneyUnmarshalJSONRefusesNonAmounts(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`"abc"`, `"1.2.3"`, `""`, `"3,20"`, `true`, `"$3.20"`, `{}`, `[]`} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			var m domain.Money
			if err := json.Unmarshal([]byte(in), &m); err == nil {
				t.Fatalf("json.Unmarshal(%s) = %s, want an error", in, m)
			}
		})
	}
}

func TestParseMoney(t *testing.T) {
	t.Parallel()
	valid := map[string]string{"2216.50": "2216.50", "-0.5": "-0.5", "45": "45", "0.335": "0.335", "+1.10": "1.10"}
	for in, want := range valid {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			m, err := domain.ParseMoney(in)
			must(t, err)
			if m.String() != want {
				t.Fatalf("ParseMoney(%q) = %q, want %q", in, m, want)
			}
		})
	}
	for _, in := range []string{"", "abc", "1.2.3", "3,20", "$3.20", "3.20 USD", "--1", "1..0"} {
		t.Run("refuses "+in, func(t *testing.T) {
			t.Parallel()
			if m, err := domain.ParseMoney(in); err == nil {
				t.Fatalf("ParseMoney(%q) = %s, want an error", in, m)
			}
		})
	}
	t.Run("MustMoney panics on a bad amount", func(t *testing.T) {
		t.Parallel()
		defer func() {
			if recover() == nil {
				t.Fatal("MustMoney(\"abc\") did not panic")
			}
		}()
		domain.MustMoney("abc")
	})
}

func TestZero(t *testing.T) {
	t.Parallel()
	for cur, want := range map[string]string{"USD": "0.00", "EUR": "0.00", "GBP": "0.00", "JPY": "0"} {
		t.Run(cur, func(t *testing.T) {
			t.Parallel()
			z := domain.Zero(cur)
			if z.String() != want || z.Sign() != 0 {
				t.Fatalf("Zero(%s) = %q (sign %d), want %q", cur, z, z.Sign(), want)
			}
			if b, _ := json.Marshal(z); string(b) != `"`+want+`"` {
				t.Fatalf("Zero(%s) JSON = %s", cur, b)
			}
		})
	}
}

func TestMinorUnits(t *testing.T) {
	t.Parallel()
	for cur, want := range map[string]int32{"USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "JPY": 0} {
		t.Run(cur, func(t *testing.T) {
			t.Parallel()
			got, err := domain.MinorUnits(cur)
			must(t, err)
			if got != want {
				t.Fatalf("MinorUnits(%s) = %d, want %d", cur, got, want)
			}
		})
	}
	for _, cur := range []string{"XYZ", "", "usd", "US"} {
		t.Run("unknown "+cur, func(t *testing.T) {
			t.Parallel()
			_, err := domain.MinorUnits(cur)
			assertCode(t, err, domain.ErrUnknownCurrency)
		})
	}
}

func TestMoneyArithmetic(t *testing.T) {
	t.Parallel()
	m := domain.MustMoney
	tests := []struct {
		name string
		got  domain.Money
		want string
	}{
		{"add keeps cents", m("2216.50").Add(m("1125.30")), "3341.80"},
		{"sub", m("3365.30").Sub(m("3341.80")), "23.50"},
		{"sub to zero keeps scale", m("3341.80").Sub(m("3341.80")), "0.00"},
		{"neg", m("2216.50").Neg(), "-2216.50"},
		{"add of different scales takes the finer", m("45").Add(m("0.10")), "45.10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.got.String() != tt.want {
				t.Fatalf("= %q, want %q", tt.got, tt.want)
			}
		})
	}
	t.Run("equal ignores scale, String does not", func(t *testing.T) {
		t.Parallel()
		a, b := m("3.2"), m("3.20")
		if !a.Equal(b) || a.String() == b.String() {
			t.Fatalf("3.2 vs 3.20: Equal %t, strings %q %q", a.Equal(b), a, b)
		}
		if !a.Decimal().Equal(b.Decimal()) {
			t.Fatal("Decimal() of 3.2 and 3.20 differ")
		}
	})
	t.Run("sign", func(t *testing.T) {
		t.Parallel()
		if m("-0.01").Sign() != -1 || m("0.00").Sign() != 0 || m("0.01").Sign() != 1 {
			t.Fatal("Sign is wrong")
		}
	})
}

func TestClocks(t *testing.T) {
	t.Parallel()
	if got := clock.Now(); !got.Equal(t0) {
		t.Errorf("FixedClock.Now() = %v, want %v", got, t0)
	}
	before := time.Now()
	now := domain.SystemClock{}.Now()
	if now.Location() != time.UTC || now.Before(before.Add(-time.Second)) || now.After(time.Now().Add(time.Second)) {
		t.Errorf("SystemClock.Now() = %v, want the current time in UTC", now)
	}
}
