package domain_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/upsell-dev/upsell/domain"
)

func TestUnitPriceTheTierReachedPricesEverySeat(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	tests := []struct {
		code  string
		term  string
		seats int
		want  string
	}{
		{emailSec, month12, 1, "3.50"},
		{emailSec, month12, 499, "3.50"},
		{emailSec, month12, 500, "3.25"},
		{emailSec, month12, 682, "3.25"},
		{emailSec, month12, 699, "3.25"},
		{emailSec, month12, 700, "3.20"},
		{emailSec, month12, 5000, "3.20"},
		{emailSec, month12, domain.MaxSeats, "3.20"},
		{emailSec, "Monthly", 1, "3.90"},
		{emailSec, "Monthly", 499, "3.90"},
		{emailSec, "Monthly", 500, "3.60"},
		{emailSec, "36 Month", 499, "3.15"},
		{emailSec, "36 Month", 500, "2.95"},
		{archive, month12, 249, "1.80"},
		{archive, month12, 250, "1.65"},
		{archive, "36 Month", 682, "1.55"},
		{awareness, month12, 999, "1.25"},
		{awareness, month12, 1000, "0.99"},
		{dmarc, month12, 3, "45.00"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%d", tt.code, tt.term, tt.seats), func(t *testing.T) {
			t.Parallel()
			p, err := cat.Product(tt.code)
			must(t, err)
			got, err := p.UnitPrice(tt.term, tt.seats)
			must(t, err)
			if got.String() != tt.want {
				t.Fatalf("UnitPrice(%q, %d) = %q, want %q", tt.term, tt.seats, got, tt.want)
			}
		})
	}
	t.Run("700 seats all cost 3.20, not 499 at 3.50 plus the rest", func(t *testing.T) {
		t.Parallel()
		p, err := cat.Product(emailSec)
		must(t, err)
		price, err := p.UnitPrice(month12, 700)
		must(t, err)
		if got := domain.Payment(700, price, "USD").String(); got != "2240.00" {
			t.Fatalf("700 seats pay %s, want 2240.00", got)
		}
	})
}

func TestUnitPriceRefusals(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	tests := []struct {
		name  string
		code  string
		term  string
		seats int
		want  *domain.Error
	}{
		{"unknown term type", emailSec, "24 Month", 500, domain.ErrUnknownTermType},
		{"term type is case sensitive", emailSec, "12 month", 500, domain.ErrUnknownTermType},
		{"empty term type", emailSec, "", 500, domain.ErrUnknownTermType},
		{"term of another product", awareness, "36 Month", 500, domain.ErrUnknownTermType},
		{"zero seats", emailSec, month12, 0, domain.ErrInvalidSeats},
		{"negative seats", emailSec, month12, -1, domain.ErrInvalidSeats},
		{"above MaxSeats", emailSec, month12, domain.MaxSeats + 1, domain.ErrInvalidSeats},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := cat.Product(tt.code)
			must(t, err)
			got, err := p.UnitPrice(tt.term, tt.seats)
			assertCode(t, err, tt.want)
			if got != (domain.Money{}) {
				t.Errorf("a refused UnitPrice returned a price %s", got)
			}
		})
	}
}

// validProduct is a small valid product for Validate's cases to break.
func validProduct() domain.Product {
	return domain.Product{
		Code: "BACKUP", Name: "Cloud Backup", PerUser: true, Currency: "USD",
		TermTypes: []string{"Monthly", month12},
		Tiers: []domain.Tier{
			{TermType: "Monthly", MinSeats: 1, UnitPrice: domain.MustMoney("2.00")},
			{TermType: month12, MinSeats: 1, UnitPrice: domain.MustMoney("1.50")},
			{TermType: month12, MinSeats: 100, UnitPrice: domain.MustMoney("1.25")},
		},
	}
}

func TestProductValidateRefusals(t *testing.T) {
	t.Parallel()
	if _, err := validProduct().Validate(); err != nil {
		t.Fatalf("the base product is refused: %v", err)
	}
	tests := []struct {
		name      string
		mutate    func(*domain.Product)
		want      *domain.Error
		wantField string
	}{
		{"empty code", func(p *domain.Product) { p.Code = "" }, domain.ErrInvalidProduct, "code"},
		{"empty name", func(p *domain.Product) { p.Name = "" }, domain.ErrInvalidProduct, "name"},
		{"unknown currency", func(p *domain.Product) { p.Currency = "XYZ" }, domain.ErrUnknownCurrency, "currency"},
		{"empty currency", func(p *domain.Product) { p.Currency = "" }, domain.ErrUnknownCurrency, "currency"},
		{"no term types", func(p *domain.Product) { p.TermTypes = nil }, domain.ErrInvalidProduct, "term_types"},
		{"empty term type", func(p *domain.Product) { p.TermTypes = []string{"Monthly", ""} }, domain.ErrInvalidProduct, "term_types[1]"},
		{"duplicate term type", func(p *domain.Product) { p.TermTypes = []string{"Monthly", month12, "Monthly"} }, domain.ErrInvalidProduct, "term_types[2]"},
		{"tier term type not in term_types", func(p *domain.Product) { p.Tiers[1].TermType = "36 Month" }, domain.ErrUnknownTermType, "tiers[1].term_type"},
		{"min_seats 0", func(p *domain.Product) { p.Tiers[0].MinSeats = 0 }, domain.ErrInvalidProduct, "tiers[0].min_seats"},
		{"min_seats negative", func(p *domain.Product) { p.Tiers[2].MinSeats = -3 }, domain.ErrInvalidProduct, "tiers[2].min_seats"},
		{"min_seats above MaxSeats", func(p *domain.Product) { p.Tiers[2].MinSeats = domain.MaxSeats + 1 }, domain.ErrInvalidProduct, "tiers[2].min_seats"},
		{"negative price", func(p *domain.Product) { p.Tiers[1].UnitPrice = domain.MustMoney("-0.01") }, domain.ErrInvalidProduct, "tiers[1].unit_price"},
		{"duplicate tier, even at another price", func(p *domain.Product) {
			p.Tiers = append(p.Tiers, domain.Tier{TermType: month12, MinSeats: 100, UnitPrice: domain.MustMoney("1.10")})
		}, domain.ErrInvalidProduct, "tiers[3]"},
		{"term type without a tier from 1 seat", func(p *domain.Product) { p.Tiers[0].MinSeats = 10 }, domain.ErrInvalidProduct, "tiers"},
		{"term type without any tier", func(p *domain.Product) { p.Tiers = p.Tiers[1:] }, domain.ErrInvalidProduct, "tiers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := validProduct()
			tt.mutate(&p)
			_, err := p.Validate()
			de := assertCode(t, err, tt.want)
			if de.Field != tt.wantField {
				t.Fatalf("Field = %q, want %q (%v)", de.Field, tt.wantField, err)
			}
			if want := tt.wantField + ": "; len(err.Error()) <= len(want) || err.Error()[:len(want)] != want {
				t.Fatalf("Error() = %q, want it to start with %q", err, want)
			}
		})
	}
}

func TestProductValidateNormalises(t *testing.T) {
	t.Parallel()
	in := domain.Product{
		Code: "EMAIL-SEC", Name: emailSecNm, PerUser: true, Currency: "USD",
		TermTypes: []string{"Monthly", month12},
		Tiers: []domain.Tier{ // deliberately out of order, prices with too few places
			{TermType: month12, MinSeats: 700, UnitPrice: domain.MustMoney("3.2")},
			{TermType: "Monthly", MinSeats: 500, UnitPrice: domain.MustMoney("3.6")},
			{TermType: month12, MinSeats: 1, UnitPrice: domain.MustMoney("3.50")},
			{TermType: "Monthly", MinSeats: 1, UnitPrice: domain.MustMoney("4")},
			{TermType: month12, MinSeats: 500, UnitPrice: domain.MustMoney("3.245")},
		},
	}
	inBefore := jsonOf(t, in)
	out, err := in.Validate()
	must(t, err)
	got := make([]string, len(out.Tiers))
	for i, tr := range out.Tiers {
		got[i] = fmt.Sprintf("%s|%d|%s", tr.TermType, tr.MinSeats, tr.UnitPrice)
	}
	want := []string{
		"Monthly|1|4.00",
		"Monthly|500|3.60",
		"12 Month|1|3.50",
		"12 Month|500|3.245", // more places than the minor unit are kept
		"12 Month|700|3.20",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("normalised tiers\n got %q\nwant %q", got, want)
	}
	if jsonOf(t, in) != inBefore {
		t.Fatalf("Validate changed its input:\nbefore %s\nafter  %s", inBefore, jsonOf(t, in))
	}
	for seats, wantPrice := range map[int]string{1: "3.50", 600: "3.245", 700: "3.20"} {
		if p, err := out.UnitPrice(month12, seats); err != nil || p.String() != wantPrice {
			t.Errorf("normalised UnitPrice(12 Month, %d) = %s, %v; want %s", seats, p, err, wantPrice)
		}
	}

	t.Run("45 becomes 45.00, JPY keeps no places", func(t *testing.T) {
		t.Parallel()
		usd := domain.Product{Code: "D", Name: "D", Currency: "USD", TermTypes: []string{month12},
			Tiers: []domain.Tier{{TermType: month12, MinSeats: 1, UnitPrice: domain.MustMoney("45")}}}
		v, err := usd.Validate()
		must(t, err)
		if s := v.Tiers[0].UnitPrice.String(); s != "45.00" {
			t.Errorf("USD 45 normalised to %q, want 45.00", s)
		}
		jpy := usd
		jpy.Currency = "JPY"
		jpy.Tiers = []domain.Tier{{TermType: month12, MinSeats: 1, UnitPrice: domain.MustMoney("450")}}
		v, err = jpy.Validate()
		must(t, err)
		if s := v.Tiers[0].UnitPrice.String(); s != "450" {
			t.Errorf("JPY 450 normalised to %q, want 450", s)
		}
	})
}

// Product.UnitPrice is exported on a struct with exported fields, and its
// contract is "the price of the highest tier the quantity reaches". A
// Product that was not passed through Validate (tiers in import order) must
// still be priced by that rule.
func TestProductUnitPriceDoesNotDependOnTierOrder(t *testing.T) {
	t.Parallel()
	p := domain.Product{
		Code: emailSec, Name: emailSecNm, PerUser: true, Currency: "USD",
		TermTypes: []string{month12},
		Tiers: []domain.Tier{
			{TermType: month12, MinSeats: 700, UnitPrice: domain.MustMoney("3.20")},
			{TermType: month12, MinSeats: 500, UnitPrice: domain.MustMoney("3.25")},
			{TermType: month12, MinSeats: 1, UnitPrice: domain.MustMoney("3.50")},
		},
	}
	for seats, want := range map[int]string{1: "3.50", 682: "3.25", 700: "3.20", 800: "3.20"} {
		got, err := p.UnitPrice(month12, seats)
		must(t, err)
		if got.String() != want {
			t.Errorf("UnitPrice(12 Month, %d) with unsorted tiers = %s, want %s", seats, got, want)
		}
	}
}

func TestUnitPriceWithoutATierForTheQuantity(t *testing.T) {
	t.Parallel()
	// Validate refuses such a product; UnitPrice on an unvalidated one must
	// still refuse rather than price at zero.
	p := domain.Product{Code: "X", Name: "X", Currency: "USD", TermTypes: []string{month12},
		Tiers: []domain.Tier{{TermType: month12, MinSeats: 100, UnitPrice: domain.MustMoney("1.00")}}}
	_, err := p.UnitPrice(month12, 99)
	assertCode(t, err, domain.ErrInvalidSeats)
	got, err := p.UnitPrice(month12, 100)
	must(t, err)
	if got.String() != "1.00" {
		t.Fatalf("UnitPrice(100) = %s", got)
	}
}

func TestNewCatalog(t *testing.T) {
	t.Parallel()
	t.Run("fixture products in their order", func(t *testing.T) {
		t.Parallel()
		cat := fixtureCatalog(t)
		var codes []string
		for _, p := range cat.Products() {
			codes = append(codes, p.Code)
		}
		if want := []string{emailSec, archive, awareness, dmarc}; !slices.Equal(codes, want) {
			t.Fatalf("Products() = %v, want %v", codes, want)
		}
		d, err := cat.Product(dmarc)
		must(t, err)
		if d.PerUser || d.Name != "DMARC Analyzer (per domain)" || d.Currency != "USD" {
			t.Fatalf("DMARC = %+v", d)
		}
	})
	t.Run("duplicate code", func(t *testing.T) {
		t.Parallel()
		ps := fixtureProducts(t)
		ps = append(ps, ps[1])
		cat, err := domain.NewCatalog(ps)
		if de := assertCode(t, err, domain.ErrInvalidProduct); de.Field != "code" {
			t.Fatalf("Field = %q, want code", de.Field)
		}
		if cat != nil {
			t.Fatal("a refused NewCatalog returned a catalog")
		}
	})
	t.Run("an invalid product keeps its field through the wrapping", func(t *testing.T) {
		t.Parallel()
		ps := fixtureProducts(t)
		ps[2].Tiers[1].MinSeats = 0
		cat, err := domain.NewCatalog(ps)
		if de := assertCode(t, err, domain.ErrInvalidProduct); de.Field != "tiers[1].min_seats" {
			t.Fatalf("Field = %q, want tiers[1].min_seats", de.Field)
		}
		if cat != nil {
			t.Fatal("a refused NewCatalog returned a catalog")
		}
	})
	t.Run("empty catalog", func(t *testing.T) {
		t.Parallel()
		cat, err := domain.NewCatalog(nil)
		must(t, err)
		if n := len(cat.Products()); n != 0 {
			t.Fatalf("empty catalog has %d products", n)
		}
	})
}

func TestCatalogProductUnknown(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)
	for _, code := range []string{"NOPE", "", "email-sec"} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			p, err := cat.Product(code)
			assertCode(t, err, domain.ErrUnknownProduct)
			if p.Code != "" {
				t.Fatalf("unknown product returned %+v", p)
			}
		})
	}
}

// The catalog is validated once and then shared by every quote (and every
// request). What Product and Products hand out must not let a caller change
// the catalog's prices or tier order.
func TestCatalogProductsCannotBeChangedThroughWhatTheyReturn(t *testing.T) {
	t.Parallel()
	cat := fixtureCatalog(t)

	p, err := cat.Product(emailSec)
	must(t, err)
	p.Tiers[4].UnitPrice = domain.MustMoney("0.01") // 12 Month from 700
	p.TermTypes[0] = "Hacked"
	for _, q := range cat.Products() {
		if q.Code == emailSec {
			q.Tiers[2].UnitPrice = domain.MustMoney("0.02") // 12 Month from 1
		}
	}

	again, err := cat.Product(emailSec)
	must(t, err)
	if got, err := again.UnitPrice(month12, 700); err != nil || got.String() != "3.20" {
		t.Errorf("after a caller edited a returned Product, 700 seats cost %s (%v), want 3.20", got, err)
	}
	if got, err := again.UnitPrice(month12, 1); err != nil || got.String() != "3.50" {
		t.Errorf("after a caller edited Products(), 1 seat costs %s (%v), want 3.50", got, err)
	}
	if again.TermTypes[0] != "Monthly" {
		t.Errorf("after a caller edited a returned Product, its first term type is %q", again.TermTypes[0])
	}
}

func TestErrorFormatting(t *testing.T) {
	t.Parallel()
	withField := &domain.Error{Code: domain.CodeInvalidProduct, Field: "tiers[2].min_seats", Detail: "must be between 1 and 10000000, got 0"}
	if got, want := withField.Error(), "tiers[2].min_seats: must be between 1 and 10000000, got 0"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	noField := &domain.Error{Code: domain.CodeQuoteClosed, Detail: "the quote is submitted"}
	if got := noField.Error(); got != "the quote is submitted" {
		t.Errorf("Error() = %q", got)
	}
	if errors.Is(withField, domain.ErrUnknownProduct) {
		t.Error("an invalid_product error matches ErrUnknownProduct")
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", withField), domain.ErrInvalidProduct) {
		t.Error("a wrapped error does not match its sentinel")
	}
	if errors.Is(withField, &domain.Error{Code: domain.CodeInvalidProduct, Field: "other"}) {
		t.Error("errors.Is matches a non-sentinel target with another Field")
	}
	if domain.CodeSeatsDecrease.String() != "seats_decrease" {
		t.Errorf("CodeSeatsDecrease = %q", domain.CodeSeatsDecrease)
	}
}
