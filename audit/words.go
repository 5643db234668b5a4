package audit

import (
	"fmt"
	"strings"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// Describe returns, for each event of a quote's stream in version order,
// the change it records in words: "Seats of Email Security Cloud Gateway
// (12 Month): 682 → 700 at 3.20 USD". The words of an event can depend on
// the events before it (a SeatsChanged names its product by the name the
// baseline or a ProductAdded gave). An event this code cannot decode (a
// type or schema version it does not know) is named by its type.
func Describe(events []eventstore.Event) []string {
	d := describer{names: map[string]string{}, terms: map[string]string{}}
	out := make([]string, len(events))
	for i, e := range events {
		decoded, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			out[i] = e.Type
			if _, known := domain.EventTypes()[e.Type]; known {
				out[i] = fmt.Sprintf("%s (schema version %d, not readable by this version of upsell)", e.Type, e.SchemaVersion)
			}
			continue
		}
		out[i] = d.describe(decoded)
	}
	return out
}

// describer keeps what earlier events said that later ones refer to.
type describer struct {
	currency string
	names    map[string]string // product code -> name
	terms    map[string]string // product code -> term type
}

// product names a product as the portal does, with its term:
// "Email Security Cloud Gateway (12 Month)".
func (d *describer) product(code string) string {
	name := d.names[code]
	if name == "" {
		name = code
	}
	if term := d.terms[code]; term != "" {
		return fmt.Sprintf("%s (%s)", name, term)
	}
	return name
}

func (d *describer) money(m domain.Money) string {
	return strings.TrimSpace(Amount(m) + " " + d.currency)
}

func (d *describer) describe(e domain.Event) string {
	switch e := e.(type) {
	case domain.ChangeQuoteOpened:
		d.currency = e.Currency
		total := domain.Zero(e.Currency)
		for _, l := range e.Baseline {
			d.names[l.ProductCode], d.terms[l.ProductCode] = l.ProductName, l.TermType
			total = total.Add(domain.Payment(l.Seats, l.UnitPrice, e.Currency))
		}
		return fmt.Sprintf("Change quote opened for %s (customer %s at version %d) by %s, user %s: %s, monthly total %s",
			e.CustomerName, e.CustomerID, e.BaselineVersion, orID(e.MSPName, e.MSPID), e.OpenedBy,
			plural(len(e.Baseline), "line", "lines"), d.money(total))
	case domain.ProductAdded:
		d.names[e.ProductCode], d.terms[e.ProductCode] = e.ProductName, e.TermType
		return fmt.Sprintf("Product added: %s, %s at %s a seat", d.product(e.ProductCode), plural(e.Seats, "seat", "seats"), d.money(e.UnitPrice))
	case domain.ProductRemoved:
		return fmt.Sprintf("Product removed: %s", d.product(e.ProductCode))
	case domain.SeatsChanged:
		if d.terms[e.ProductCode] == "" {
			d.terms[e.ProductCode] = e.TermType
		}
		return fmt.Sprintf("Seats of %s: %d → %d at %s a seat", d.product(e.ProductCode), e.PreviousSeats, e.NewSeats, d.money(e.UnitPrice))
	case domain.QuoteSaved:
		return "Quote saved"
	case domain.QuoteCancelled:
		return "Quote cancelled: the quote is closed"
	case domain.OrderReviewed:
		return fmt.Sprintf("Order reviewed: monthly total %s → %s, %s", Amount(e.PriorMonthlyTotal), d.money(e.NewMonthlyTotal),
			plural(e.TotalUsers, "user", "users"))
	case domain.AcknowledgementsGiven:
		var given []string
		if e.MSAGovernsOrder {
			given = append(given, "the master service provider agreement governs the order")
		}
		if e.AuthorizedToOrder {
			given = append(given, "authorized to place it")
		}
		if len(given) == 0 {
			given = append(given, "none")
		}
		return fmt.Sprintf("Acknowledgements given by user %s: %s", e.By, strings.Join(given, "; "))
	case domain.OrderSubmitted:
		return fmt.Sprintf("Order submitted by user %s: monthly total %s → %s (%s), %s; acknowledged by user %s",
			e.SubmittedBy, Amount(e.PriorMonthlyTotal), d.money(e.NewMonthlyTotal), Signed(e.MonthlyDifference),
			plural(e.TotalUsers, "user", "users"), e.AcknowledgedBy)
	default:
		// A type of another stream (a customer's), decodable but out of place.
		return e.EventType()
	}
}

func orID(name, id string) string {
	if name == "" {
		return id
	}
	return name
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Amount prints money with its scale and thousands separators: "4,240.30".
func Amount(m domain.Money) string { return thousands(m.String()) }

// thousands puts separators into the whole part of a decimal number.
func thousands(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	whole, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	b.WriteString(sign)
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if hasFrac {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}

// Signed is Amount with a plus sign on a positive amount: "+898.50".
func Signed(m domain.Money) string {
	if m.Sign() > 0 {
		return "+" + Amount(m)
	}
	return Amount(m)
}
