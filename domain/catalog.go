package domain

import (
	"fmt"
	"slices"
	"sort"
)

// MaxSeats bounds every quantity, far above any real subscription, so that
// no arithmetic on seats can overflow and a typo of extra zeros is caught.
const MaxSeats = 10_000_000

// Tier is a volume tier: from MinSeats seats on, every seat of a line of
// this term type costs UnitPrice per month.
type Tier struct {
	TermType  string `json:"term_type"`
	MinSeats  int    `json:"min_seats"`
	UnitPrice Money  `json:"unit_price"`
}

// Product is a catalog entry with its monthly per-seat prices.
type Product struct {
	Code      string   `json:"code"`
	Name      string   `json:"name"`
	PerUser   bool     `json:"per_user"`
	Currency  string   `json:"currency"`
	TermTypes []string `json:"term_types"`
	Tiers     []Tier   `json:"tiers"`
}

// Validate checks a product on its own and returns it normalised: tiers
// sorted by term type and MinSeats, prices with at least the currency's
// minor unit. A refusal is an *Error whose Field names the part at fault.
func (p Product) Validate() (Product, error) {
	if p.Code == "" {
		return p, fieldError(CodeInvalidProduct, "code", "is empty")
	}
	if p.Name == "" {
		return p, fieldError(CodeInvalidProduct, "name", "is empty")
	}
	minor, err := MinorUnits(p.Currency)
	if err != nil {
		return p, fieldError(CodeUnknownCurrency, "currency", "unknown currency %q", p.Currency)
	}
	if len(p.TermTypes) == 0 {
		return p, fieldError(CodeInvalidProduct, "term_types", "is empty")
	}
	for i, t := range p.TermTypes {
		if t == "" {
			return p, fieldError(CodeInvalidProduct, fmt.Sprintf("term_types[%d]", i), "is empty")
		}
		if slices.Index(p.TermTypes, t) != i {
			return p, fieldError(CodeInvalidProduct, fmt.Sprintf("term_types[%d]", i), "duplicate term type %q", t)
		}
	}
	out := p
	out.TermTypes = slices.Clone(p.TermTypes)
	out.Tiers = make([]Tier, len(p.Tiers))
	seen := map[Tier]bool{}
	for i, t := range p.Tiers {
		field := fmt.Sprintf("tiers[%d]", i)
		if !slices.Contains(p.TermTypes, t.TermType) {
			return p, fieldError(CodeUnknownTermType, field+".term_type", "term type %q is not among the product's term_types", t.TermType)
		}
		if t.MinSeats < 1 || t.MinSeats > MaxSeats {
			return p, fieldError(CodeInvalidProduct, field+".min_seats", "must be between 1 and %d, got %d", MaxSeats, t.MinSeats)
		}
		if t.UnitPrice.Sign() < 0 {
			return p, fieldError(CodeInvalidProduct, field+".unit_price", "must not be negative, got %s", t.UnitPrice)
		}
		key := Tier{TermType: t.TermType, MinSeats: t.MinSeats}
		if seen[key] {
			return p, fieldError(CodeInvalidProduct, field, "a second tier for %q from %d seats", t.TermType, t.MinSeats)
		}
		seen[key] = true
		t.UnitPrice = t.UnitPrice.atLeastPlaces(minor)
		out.Tiers[i] = t
	}
	for _, term := range p.TermTypes {
		if !seen[Tier{TermType: term, MinSeats: 1}] {
			return p, fieldError(CodeInvalidProduct, "tiers", "term type %q has no tier from 1 seat, so some quantities would have no price", term)
		}
	}
	sort.SliceStable(out.Tiers, func(i, j int) bool {
		a, b := out.Tiers[i], out.Tiers[j]
		if a.TermType != b.TermType {
			return slices.Index(p.TermTypes, a.TermType) < slices.Index(p.TermTypes, b.TermType)
		}
		return a.MinSeats < b.MinSeats
	})
	return out, nil
}

// UnitPrice is the monthly per-seat price of seats seats on a term: the
// price of the highest tier the quantity reaches, for every seat.
func (p Product) UnitPrice(termType string, seats int) (Money, error) {
	if !slices.Contains(p.TermTypes, termType) {
		return Money{}, newError(CodeUnknownTermType, "%s is not offered on the term %q (offered: %v)", p.Code, termType, p.TermTypes)
	}
	if problem := seatsProblem(seats); problem != "" {
		return Money{}, newError(CodeInvalidSeats, "%s", problem)
	}
	var best *Tier
	for i, t := range p.Tiers {
		if t.TermType == termType && t.MinSeats <= seats && (best == nil || t.MinSeats > best.MinSeats) {
			best = &p.Tiers[i]
		}
	}
	if best == nil {
		return Money{}, newError(CodeInvalidSeats, "%s has no price for %d seats on %q", p.Code, seats, termType)
	}
	return best.UnitPrice, nil
}

// seatsProblem says what is wrong with a seat count, or "" when nothing is.
func seatsProblem(seats int) string {
	if seats < 1 || seats > MaxSeats {
		return fmt.Sprintf("seats must be between 1 and %d, got %d", MaxSeats, seats)
	}
	return ""
}

// Catalog is the set of products an MSP can sell, keyed by code.
type Catalog struct {
	products map[string]Product
	order    []string
}

// NewCatalog validates the products and builds a catalog.
func NewCatalog(products []Product) (*Catalog, error) {
	c := &Catalog{products: make(map[string]Product, len(products))}
	for i, p := range products {
		v, err := p.Validate()
		if err != nil {
			return nil, fmt.Errorf("product %d (%q): %w", i, p.Code, err)
		}
		if _, dup := c.products[v.Code]; dup {
			return nil, fieldError(CodeInvalidProduct, "code", "product %q appears twice", v.Code)
		}
		c.products[v.Code] = v
		c.order = append(c.order, v.Code)
	}
	return c, nil
}

// Product returns the product with the code, or an unknown_product error.
// The product is a copy: a catalog is shared, and its prices are not the
// caller's to change.
func (c *Catalog) Product(code string) (Product, error) {
	p, ok := c.products[code]
	if !ok {
		return Product{}, newError(CodeUnknownProduct, "no product %q in the catalog", code)
	}
	return p.clone(), nil
}

func (p Product) clone() Product {
	p.TermTypes = slices.Clone(p.TermTypes)
	p.Tiers = slices.Clone(p.Tiers)
	return p
}

// Products returns the products in the order they were given.
func (c *Catalog) Products() []Product {
	out := make([]Product, 0, len(c.order))
	for _, code := range c.order {
		out = append(out, c.products[code].clone())
	}
	return out
}
