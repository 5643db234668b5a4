package domain

import (
	"slices"
	"time"

	"github.com/google/uuid"
)

// PricedLine is a product line as the Preview Change Quote shows it.
type PricedLine struct {
	ProductCode    string `json:"product_code"`
	ProductName    string `json:"product_name"`
	TermType       string `json:"term_type"`
	Seats          int    `json:"seats"`
	UnitPrice      Money  `json:"unit_price"`
	MonthlyPayment Money  `json:"monthly_payment"`
}

// ChangeLine is one half of a seat change in "Changes to Existing
// Products": the prior quantity as a negative line, the new one positive.
type ChangeLine struct {
	ProductCode    string `json:"product_code"`
	ProductName    string `json:"product_name"`
	TermType       string `json:"term_type"`
	Quantity       int    `json:"quantity"`
	UnitPrice      Money  `json:"unit_price"`
	MonthlyPayment Money  `json:"monthly_payment"`
}

// CustomerRef names the customer of a quote.
type CustomerRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Preview is the Preview Change Quote.
type Preview struct {
	QuoteID                   uuid.UUID    `json:"quote_id"`
	Customer                  CustomerRef  `json:"customer"`
	Status                    Status       `json:"status"`
	Version                   int64        `json:"version"`
	Currency                  string       `json:"currency"`
	AddedProducts             []PricedLine `json:"added_products"`
	CurrentProducts           []PricedLine `json:"current_products"`
	ChangesToExistingProducts []ChangeLine `json:"changes_to_existing_products"`
	PriorMonthlyTotal         Money        `json:"prior_monthly_total"`
	NewMonthlyTotal           Money        `json:"new_monthly_total"`
	MonthlyDifference         Money        `json:"monthly_difference"`
}

// Preview prices the quote as it stands: the subscription when the quote
// was opened, the seat changes as -prior/+new pairs, the added products, and
// new total = prior total + changes + added.
func (q *ChangeQuote) Preview() Preview {
	cur := q.opened.Currency
	p := Preview{
		QuoteID:                   q.opened.QuoteID,
		Customer:                  CustomerRef{ID: q.opened.CustomerID, Name: q.opened.CustomerName},
		Status:                    q.status,
		Version:                   q.version,
		Currency:                  cur,
		AddedProducts:             []PricedLine{},
		CurrentProducts:           []PricedLine{},
		ChangesToExistingProducts: []ChangeLine{},
		PriorMonthlyTotal:         Zero(cur),
	}
	for _, l := range q.added {
		p.AddedProducts = append(p.AddedProducts, priced(l, cur))
	}
	for _, base := range q.opened.Baseline {
		line := priced(base, cur)
		p.CurrentProducts = append(p.CurrentProducts, line)
		p.PriorMonthlyTotal = p.PriorMonthlyTotal.Add(line.MonthlyPayment)
		if now, ok := q.changed[base.ProductCode]; ok {
			p.ChangesToExistingProducts = append(p.ChangesToExistingProducts,
				changeLine(base, -base.Seats, cur), changeLine(now, now.Seats, cur))
		}
	}
	p.NewMonthlyTotal = p.PriorMonthlyTotal
	for _, c := range p.ChangesToExistingProducts {
		p.NewMonthlyTotal = p.NewMonthlyTotal.Add(c.MonthlyPayment)
	}
	for _, a := range p.AddedProducts {
		p.NewMonthlyTotal = p.NewMonthlyTotal.Add(a.MonthlyPayment)
	}
	p.MonthlyDifference = p.NewMonthlyTotal.Sub(p.PriorMonthlyTotal)
	return p
}

func priced(l Line, currency string) PricedLine {
	return PricedLine{
		ProductCode: l.ProductCode, ProductName: l.ProductName, TermType: l.TermType,
		Seats: l.Seats, UnitPrice: l.UnitPrice, MonthlyPayment: Payment(l.Seats, l.UnitPrice, currency),
	}
}

func changeLine(l Line, quantity int, currency string) ChangeLine {
	return ChangeLine{
		ProductCode: l.ProductCode, ProductName: l.ProductName, TermType: l.TermType,
		Quantity: quantity, UnitPrice: l.UnitPrice, MonthlyPayment: Payment(quantity, l.UnitPrice, currency),
	}
}

// MSPRef names the MSP of a quote.
type MSPRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Acknowledgements as the Change Order Summary shows them.
type Acknowledgements struct {
	MSAGovernsOrder   bool      `json:"msa_governs_order"`
	AuthorizedToOrder bool      `json:"authorized_to_order"`
	By                string    `json:"by"`
	At                time.Time `json:"at"`
}

// Summary is the Change Order Summary of a reviewed (or submitted) quote.
type Summary struct {
	QuoteID           uuid.UUID         `json:"quote_id"`
	Status            Status            `json:"status"`
	Version           int64             `json:"version"`
	Currency          string            `json:"currency"`
	MSP               MSPRef            `json:"msp"`
	CompanyName       string            `json:"company_name"`
	TotalUsers        int               `json:"total_users"`
	Lines             []OrderLine       `json:"lines"`
	PriorMonthlyTotal Money             `json:"prior_monthly_total"`
	NewMonthlyTotal   Money             `json:"new_monthly_total"`
	Acknowledgements  *Acknowledgements `json:"acknowledgements"`
	ReviewedAt        time.Time         `json:"reviewed_at"`
	SubmittedAt       *time.Time        `json:"submitted_at"`
}

// Summary returns the Change Order Summary frozen by the latest review, or
// not_reviewed when the quote is not (or no longer) reviewed.
func (q *ChangeQuote) Summary() (Summary, error) {
	r := q.review
	if r == nil {
		return Summary{}, newError(CodeNotReviewed, "the quote has not been reviewed since its last change")
	}
	s := Summary{
		QuoteID: q.opened.QuoteID, Status: q.status, Version: q.version, Currency: q.opened.Currency,
		MSP:         MSPRef{ID: q.opened.MSPID, Name: q.opened.MSPName},
		CompanyName: q.opened.CustomerName, TotalUsers: r.TotalUsers, Lines: slices.Clone(r.Lines),
		PriorMonthlyTotal: r.PriorMonthlyTotal, NewMonthlyTotal: r.NewMonthlyTotal,
		ReviewedAt: r.ReviewedAt,
	}
	if a := q.acks; a != nil {
		s.Acknowledgements = &Acknowledgements{
			MSAGovernsOrder: a.MSAGovernsOrder, AuthorizedToOrder: a.AuthorizedToOrder, By: a.By, At: a.At,
		}
	}
	if q.submitted != nil {
		at := q.submitted.SubmittedAt
		s.SubmittedAt = &at
	}
	return s, nil
}

// orderLines is the whole subscription after the change: every baseline
// line (changed or not), then the added products with prior quantity 0.
func (q *ChangeQuote) orderLines() []OrderLine {
	cur := q.opened.Currency
	lines := make([]OrderLine, 0, len(q.opened.Baseline)+len(q.added))
	for _, base := range q.opened.Baseline {
		now := base
		if l, ok := q.changed[base.ProductCode]; ok {
			now = l
		}
		lines = append(lines, OrderLine{
			ProductCode: base.ProductCode, Product: base.ProductName, TermType: base.TermType, PerUser: base.PerUser,
			PriorQuantity: base.Seats, CurrentQuantity: now.Seats,
			PriorUnitPrice: base.UnitPrice, CurrentUnitPrice: now.UnitPrice,
			PriorPayment: Payment(base.Seats, base.UnitPrice, cur), CurrentPayment: Payment(now.Seats, now.UnitPrice, cur),
		})
	}
	for _, a := range q.added {
		lines = append(lines, OrderLine{
			ProductCode: a.ProductCode, Product: a.ProductName, TermType: a.TermType, PerUser: a.PerUser,
			PriorQuantity: 0, CurrentQuantity: a.Seats,
			PriorUnitPrice: Zero(cur), CurrentUnitPrice: a.UnitPrice,
			PriorPayment: Zero(cur), CurrentPayment: Payment(a.Seats, a.UnitPrice, cur),
		})
	}
	return lines
}

func orderTotals(lines []OrderLine, currency string) (prior, current Money) {
	prior, current = Zero(currency), Zero(currency)
	for _, l := range lines {
		prior = prior.Add(l.PriorPayment)
		current = current.Add(l.CurrentPayment)
	}
	return prior, current
}

// orderTotalUsers is the largest current quantity among per-user lines.
func orderTotalUsers(lines []OrderLine) int {
	return totalUsers(lines, func(l OrderLine) (bool, int) { return l.PerUser, l.CurrentQuantity })
}
