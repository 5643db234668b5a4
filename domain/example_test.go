package domain_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/domain"
)

// The seed story: Contoso's 682 seats of Email Security at 3.25 become 700,
// which reaches the 700-seat tier at 3.20 for every seat.
func Example() {
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	catalog, _ := domain.NewCatalog([]domain.Product{{
		Code: "EMAIL-SEC", Name: "Email Security Cloud Gateway", PerUser: true, Currency: "USD",
		TermTypes: []string{"12 Month"},
		Tiers: []domain.Tier{
			{TermType: "12 Month", MinSeats: 1, UnitPrice: domain.MustMoney("3.50")},
			{TermType: "12 Month", MinSeats: 500, UnitPrice: domain.MustMoney("3.25")},
			{TermType: "12 Month", MinSeats: 700, UnitPrice: domain.MustMoney("3.20")},
		},
	}})
	contoso, _ := domain.OnboardCustomer("cust-contoso", "msp-northwind", "Contoso Ltd", "USD", []domain.Line{{
		ProductCode: "EMAIL-SEC", ProductName: "Email Security Cloud Gateway", TermType: "12 Month",
		PerUser: true, Seats: 682, UnitPrice: domain.MustMoney("3.25"),
	}}, at)
	contoso, _ = domain.LoadCustomer(contoso.Changes()) // as stored
	alex := domain.Actor{MSPID: "msp-northwind", UserID: "u-alex"}

	quote, _ := domain.OpenChangeQuote(uuid.New(), contoso, "Northwind Managed Services", alex, at)
	if err := quote.ChangeSeats(catalog, "EMAIL-SEC", 700); err != nil {
		fmt.Println(err)
	}
	p := quote.Preview()
	for _, l := range p.ChangesToExistingProducts {
		fmt.Printf("%s %d x %s = %s\n", l.ProductCode, l.Quantity, l.UnitPrice, l.MonthlyPayment)
	}
	fmt.Println("new monthly total", p.NewMonthlyTotal)

	err := quote.ChangeSeats(catalog, "EMAIL-SEC", 600)
	fmt.Println(err, errors.Is(err, domain.ErrSeatsDecrease))
	// Output:
	// EMAIL-SEC -682 x 3.25 = -2216.50
	// EMAIL-SEC 700 x 3.20 = 2240.00
	// new monthly total 2240.00
	// EMAIL-SEC has 682 seats; an upsell cannot lower it to 600 true
}
