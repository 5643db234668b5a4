package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// cmdDemo runs the seed story through the application layer, exactly as the
// portal will: open a change quote for Contoso Ltd, raise Email Security to
// 700 seats, add a product, save, review, acknowledge and submit. A second
// run finds Contoso already at 700 and raises it by 18 more, so the story
// can be told again on the same data.
func cmdDemo(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("demo")
	customerID := fs.String("customer", "cust-contoso", "the customer whose subscription changes")
	userID := fs.String("user", "", "the MSP user who acts (default: the MSP's first user)")
	product := fs.String("raise", "EMAIL-SEC", "the product whose seats are raised")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"demo takes no arguments"}
	}
	pool, err := c.connectCurrent(ctx)
	if err != nil {
		return err
	}
	svc := newService(pool)
	// The demo acts as a user of the customer's own MSP.
	stored, err := svc.Store().Load(ctx, *customerID, eventstore.LoadOptions{UpToVersion: 1})
	if err != nil {
		return err
	}
	history, err := app.DecodeEvents(stored)
	if err != nil {
		return err
	}
	onboarded, ok := firstOf[domain.CustomerOnboarded](history)
	if !ok {
		return fmt.Errorf("customer %q is not in the database: run `upsell import fixtures/import-example.json` first", *customerID)
	}
	actor := domain.Actor{MSPID: onboarded.MSPID}
	var mspName string
	err = pool.QueryRow(ctx, `
		SELECT m.name, u.id FROM msps m JOIN msp_users u ON u.msp_id = m.id
		WHERE m.id = $1 AND ($2 = '' OR u.id = $2) ORDER BY u.id LIMIT 1`, actor.MSPID, *userID).Scan(&mspName, &actor.UserID)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("MSP %q of customer %q has no user %q", actor.MSPID, *customerID, *userID)
	}
	if err != nil {
		return fmt.Errorf("find the demo's MSP user: %w", err)
	}
	d := demo{svc: svc, out: c.stdout, meta: app.Meta{Actor: actor}, mspName: mspName}
	return d.run(ctx, *customerID, *product)
}

type demo struct {
	svc     *app.Service
	out     io.Writer
	meta    app.Meta
	mspName string
	step    int
}

func (d *demo) run(ctx context.Context, customerID, product string) error {
	customer, err := d.svc.LoadCustomer(ctx, d.meta.Actor, customerID)
	if err != nil {
		return err
	}
	catalog, err := d.svc.Catalog(ctx)
	if err != nil {
		return err
	}
	lines := customer.Lines()
	i := slices.IndexFunc(lines, func(l domain.Line) bool { return l.ProductCode == product })
	if i < 0 {
		return fmt.Errorf("%s has no %s line to raise", customer.Name(), product)
	}
	target := 700
	if lines[i].Seats >= target {
		target = lines[i].Seats + 18
		fmt.Fprintf(d.out, "Note: %s already has %d seats of %s (an earlier demo run submitted its order); this run raises it to %d.\n\n",
			customer.Name(), lines[i].Seats, product, target)
	}
	addCode := ""
	for _, p := range catalog.Products() {
		owned := slices.ContainsFunc(lines, func(l domain.Line) bool { return l.ProductCode == p.Code })
		if !owned && p.PerUser && p.Currency == customer.Currency() {
			addCode = p.Code
			break
		}
	}
	fmt.Fprintf(d.out, "Upsell demo: %s (user %s) changes %s's subscription.\n", d.mspName, d.meta.Actor.UserID, customer.Name())
	fmt.Fprintf(d.out, "Current monthly total: %s %s\n", customer.MonthlyTotal(), customer.Currency())

	res, err := d.svc.OpenChangeQuote(ctx, d.meta, customerID)
	if err := d.show("Open a change quote for "+customer.Name(), res, err); err != nil {
		return err
	}
	id := res.QuoteID
	res, err = d.svc.ChangeSeats(ctx, d.meta, id, product, target)
	if err := d.show(fmt.Sprintf("Raise %s from %d to %d seats (the new total is entered)", product, lines[i].Seats, target), res, err); err != nil {
		return err
	}
	if addCode != "" {
		res, err = d.svc.AddProduct(ctx, d.meta, id, addCode, firstTerm(catalog, addCode), target)
		if err := d.show(fmt.Sprintf("Add %s with %d seats", addCode, target), res, err); err != nil {
			return err
		}
	}
	d.preview(res.Quote.Preview())
	res, err = d.svc.SaveQuote(ctx, d.meta, id)
	if err := d.show("Save the quote", res, err); err != nil {
		return err
	}
	res, err = d.svc.ReviewOrder(ctx, d.meta, id)
	if err := d.show("Review the order", res, err); err != nil {
		return err
	}
	res, err = d.svc.Acknowledge(ctx, d.meta, id, true, true)
	if err := d.show("Give both acknowledgements", res, err); err != nil {
		return err
	}
	res, err = d.svc.SubmitOrder(ctx, d.meta, id)
	if err := d.show("Submit the order", res, err); err != nil {
		return err
	}
	summary, err := res.Quote.Summary()
	if err != nil {
		return err
	}
	d.summary(summary)
	after, err := d.svc.LoadCustomer(ctx, d.meta.Actor, customerID)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\n%s now pays %s %s a month (was %s); its stream is at version %d.\nQuote %s\n",
		after.Name(), after.MonthlyTotal(), after.Currency(), customer.MonthlyTotal(), after.Version(), id)
	return nil
}

func firstOf[E domain.Event](events []domain.Event) (E, bool) {
	var zero E
	if len(events) == 0 {
		return zero, false
	}
	e, ok := events[0].(E)
	return e, ok
}

func firstTerm(c *domain.Catalog, code string) string {
	p, err := c.Product(code)
	if err != nil || len(p.TermTypes) == 0 {
		return ""
	}
	// Prefer the 12-month term that the seed's lines use, when offered.
	if slices.Contains(p.TermTypes, "12 Month") {
		return "12 Month"
	}
	return p.TermTypes[0]
}

// show prints a step, the events it appended and the quote's totals.
func (d *demo) show(title string, res app.Result, err error) error {
	d.step++
	fmt.Fprintf(d.out, "\n%d. %s\n", d.step, title)
	if err != nil {
		return fmt.Errorf("step %d (%s): %w", d.step, title, err)
	}
	for _, e := range res.Events {
		fmt.Fprintf(d.out, "   %-22s %s v%d  position %d\n     %s\n", e.Type, e.StreamType, e.Version, e.Position, compact(e.Data))
	}
	if len(res.Events) == 0 {
		fmt.Fprintln(d.out, "   (no change: nothing appended)")
	}
	p := res.Quote.Preview()
	fmt.Fprintf(d.out, "   quote %s, version %d: monthly %s -> %s (%s)\n", p.Status, p.Version, p.PriorMonthlyTotal, p.NewMonthlyTotal, signed(p.MonthlyDifference))
	return nil
}

func (d *demo) preview(p domain.Preview) {
	fmt.Fprintf(d.out, "\n   Preview Change Quote for %s\n", p.Customer.Name)
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\t   \tProduct\tTerm\tQuantity\tUnit price\tMonthly\t")
	row := func(part, code, term string, qty int, unit, pay domain.Money) {
		fmt.Fprintf(tw, "\t   %s\t%s\t%s\t%d\t%s\t%s\t\n", part, code, term, qty, unit, pay)
	}
	for _, l := range p.AddedProducts {
		row("added", l.ProductCode, l.TermType, l.Seats, l.UnitPrice, l.MonthlyPayment)
	}
	for _, l := range p.ChangesToExistingProducts {
		row("change", l.ProductCode, l.TermType, l.Quantity, l.UnitPrice, l.MonthlyPayment)
	}
	for _, l := range p.CurrentProducts {
		row("current", l.ProductCode, l.TermType, l.Seats, l.UnitPrice, l.MonthlyPayment)
	}
	_ = tw.Flush()
	fmt.Fprintf(d.out, "   prior monthly total %s, new monthly total %s, difference %s\n", p.PriorMonthlyTotal, p.NewMonthlyTotal, signed(p.MonthlyDifference))
}

func (d *demo) summary(s domain.Summary) {
	fmt.Fprintf(d.out, "\n   Change Order Summary: %s for %s, %d users, status %s\n", s.MSP.Name, s.CompanyName, s.TotalUsers, s.Status)
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\t   Product\tTerm\tPrior qty\tQty\tPrior price\tPrice\tPrior payment\tPayment\t")
	for _, l := range s.Lines {
		fmt.Fprintf(tw, "\t   %s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t\n", l.ProductCode, l.TermType,
			l.PriorQuantity, l.CurrentQuantity, l.PriorUnitPrice, l.CurrentUnitPrice, l.PriorPayment, l.CurrentPayment)
	}
	_ = tw.Flush()
	fmt.Fprintf(d.out, "   prior monthly total %s, new monthly total %s\n", s.PriorMonthlyTotal, s.NewMonthlyTotal)
}

func signed(m domain.Money) string {
	if m.Sign() >= 0 {
		return "+" + m.String()
	}
	return m.String()
}

func compact(data json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return string(data)
	}
	return b.String()
}
