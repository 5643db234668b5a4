package domain

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Customer is a customer of an MSP with its current subscription. Its stream
// starts with CustomerOnboarded and records every submitted change order;
// its version is what a change quote's baseline refers to.
type Customer struct {
	id       string
	mspID    string
	name     string
	currency string
	lines    []Line
	stream
}

// OnboardCustomer validates a new customer with its current subscription and
// records CustomerOnboarded. Lines are priced as contracted, so each line's
// unit price is kept as given. Refusals name the field at fault.
func OnboardCustomer(id, mspID, name, currency string, lines []Line, at time.Time) (*Customer, error) {
	switch {
	case id == "":
		return nil, fieldError(CodeInvalidCustomer, "id", "is empty")
	case mspID == "":
		return nil, fieldError(CodeInvalidCustomer, "msp_id", "is empty")
	case name == "":
		return nil, fieldError(CodeInvalidCustomer, "name", "is empty")
	}
	minor, err := MinorUnits(currency)
	if err != nil {
		return nil, fieldError(CodeUnknownCurrency, "currency", "unknown currency %q", currency)
	}
	norm := make([]Line, len(lines))
	for i, l := range lines {
		field := fmt.Sprintf("subscriptions[%d]", i)
		if l.ProductCode == "" {
			return nil, fieldError(CodeInvalidCustomer, field+".product_code", "is empty")
		}
		if l.TermType == "" {
			return nil, fieldError(CodeInvalidCustomer, field+".term_type", "is empty")
		}
		if slices.IndexFunc(lines[:i], func(o Line) bool { return o.ProductCode == l.ProductCode }) >= 0 {
			return nil, fieldError(CodeProductAlreadyPresent, field+".product_code", "product %q appears twice", l.ProductCode)
		}
		if problem := seatsProblem(l.Seats); problem != "" {
			return nil, fieldError(CodeInvalidSeats, field+".seats", "%s", problem)
		}
		if l.UnitPrice.Sign() < 0 {
			return nil, fieldError(CodeInvalidCustomer, field+".unit_price", "must not be negative, got %s", l.UnitPrice)
		}
		l.UnitPrice = l.UnitPrice.atLeastPlaces(minor)
		norm[i] = l
	}
	c := &Customer{}
	c.record(CustomerOnboarded{
		CustomerID: id, MSPID: mspID, Name: name, Currency: currency,
		Lines: norm, OnboardedAt: at.UTC(),
	})
	return c, nil
}

// LoadCustomer rebuilds a customer from its stream's events, oldest first.
func LoadCustomer(history []Event) (*Customer, error) {
	if len(history) == 0 {
		return nil, newError(CodeNotFound, "customer not found")
	}
	return ReplayCustomer(nil, history)
}

// ReplayCustomer applies a stream's stored events, oldest first, to c, the
// customer as its earlier events left it, and returns it; c nil starts from
// nothing, and events must then begin with CustomerOnboarded (see
// ReplayChangeQuote).
func ReplayCustomer(c *Customer, events []Event) (*Customer, error) {
	if c == nil {
		if len(events) == 0 {
			return nil, newError(CodeNotFound, "customer not found")
		}
		if _, ok := events[0].(CustomerOnboarded); !ok {
			return nil, fmt.Errorf("customer stream starts with %s, not CustomerOnboarded", events[0].EventType())
		}
		c = &Customer{}
	}
	for _, e := range events {
		if err := c.apply(e); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Customer) ID() string       { return c.id }
func (c *Customer) MSPID() string    { return c.mspID }
func (c *Customer) Name() string     { return c.name }
func (c *Customer) Currency() string { return c.currency }

// Lines returns a copy of the current subscription.
func (c *Customer) Lines() []Line { return slices.Clone(c.lines) }

// PricedLines is the subscription with each line's monthly payment, as
// the customer detail shows it.
func (c *Customer) PricedLines() []PricedLine {
	out := make([]PricedLine, len(c.lines))
	for i, l := range c.lines {
		out[i] = priced(l, c.currency)
	}
	return out
}

// TotalUsers is the largest seat count among the per-user lines.
func (c *Customer) TotalUsers() int {
	return totalUsers(c.lines, func(l Line) (bool, int) { return l.PerUser, l.Seats })
}

// MonthlyTotal is the sum of the lines' rounded monthly payments.
func (c *Customer) MonthlyTotal() Money {
	total := Zero(c.currency)
	for _, l := range c.lines {
		total = total.Add(Payment(l.Seats, l.UnitPrice, c.currency))
	}
	return total
}

// amend records the submitted order on the subscription. The quote checked
// the baseline; the event store's expected version guards the race.
func (c *Customer) amend(quoteID uuid.UUID, order OrderSubmitted) {
	after := *c
	after.lines = slices.Clone(c.lines)
	after.applyOrderLines(order.Lines)
	c.record(SubscriptionAmended{
		CustomerID: c.id, QuoteID: quoteID, Lines: order.Lines,
		NewMonthlyTotal: after.MonthlyTotal(), AmendedAt: order.SubmittedAt,
	})
}

func (c *Customer) record(e Event) { c.stream.record(e, c.apply) }

func (c *Customer) apply(e Event) error {
	switch e := e.(type) {
	case CustomerOnboarded:
		c.id, c.mspID, c.name, c.currency = e.CustomerID, e.MSPID, e.Name, e.Currency
		c.lines = slices.Clone(e.Lines)
	case SubscriptionAmended:
		c.applyOrderLines(e.Lines)
	default:
		return fmt.Errorf("customer: unexpected event %s", e.EventType())
	}
	c.version++
	return nil
}

func (c *Customer) applyOrderLines(lines []OrderLine) {
	for _, ol := range lines {
		i := slices.IndexFunc(c.lines, func(l Line) bool { return l.ProductCode == ol.ProductCode })
		if i < 0 {
			c.lines = append(c.lines, Line{
				ProductCode: ol.ProductCode, ProductName: ol.Product, TermType: ol.TermType,
				PerUser: ol.PerUser, Seats: ol.CurrentQuantity, UnitPrice: ol.CurrentUnitPrice,
			})
			continue
		}
		c.lines[i].Seats = ol.CurrentQuantity
		c.lines[i].UnitPrice = ol.CurrentUnitPrice
	}
}

func totalUsers[T any](items []T, seats func(T) (perUser bool, n int)) int {
	most := 0
	for _, it := range items {
		if perUser, n := seats(it); perUser && n > most {
			most = n
		}
	}
	return most
}
