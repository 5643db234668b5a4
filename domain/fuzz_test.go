package domain_test

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/upsell-dev/upsell/domain"
)

// fuzzSeats are the seat counts a fuzz program picks from, besides the
// fuzzer's own number: the edges of the rules and of int.
var fuzzSeats = []int{
	0, 1, -1, 681, 682, 683, 699, 700, 999, 1000, 1001, domain.MaxSeats, domain.MaxSeats + 1, domain.MaxSeats - 1,
	math.MaxInt32, math.MaxInt32 + 1, math.MinInt32, math.MaxInt64, math.MinInt64, math.MinInt64 + 1, 250, 500,
}

// quoteProgram runs a fuzz program of commands on a quote opened on
// Contoso, checking after every command that a refused command changed
// nothing and that the quote's invariants hold.
//
// Each command is one byte (what and on which product and term) and one
// more byte picking the seats: op%9 is the command, op/9 picks the product
// (of the fixture's four and the fuzzer's code) and the term (of three
// fixture terms and the fuzzer's term). The fuzzer's code, when the
// catalog accepts it, is a product of its own on the fuzzer's term.
type quoteProgram struct {
	t         *testing.T
	cat       *domain.Catalog
	customer  *domain.Customer
	q         *domain.ChangeQuote
	baseline  []domain.Line
	codes     []string
	terms     []string
	seats     int
	submitted bool
}

// FuzzChangeQuote: no command panics on any input; a refused command is a
// *domain.Error with a code and a detail and records nothing (Changes(),
// Version, Status and the preview are as before); and after every command
// the invariants hold: no line of the subscription below its seats, every
// added line between 1 and MaxSeats seats, no negative price, payment or
// total, the new total the prior total plus the changes plus the added
// products, the reviewed summary's totals the sums of its lines, and the
// recorded events, stored and loaded, rebuild the same quote.
//
//	go test -run '^$' -fuzz '^FuzzChangeQuote$' -fuzztime 2m ./domain/
func FuzzChangeQuote(f *testing.F) {
	// op(cmd, product, term) is one command byte.
	op := func(cmd, product, term int) byte { return byte(cmd + 9*(product+5*term)) }
	const (
		add = iota
		remove
		seats
		save
		cancel
		review
		ack
		submit
		seats2
	)
	const (
		emailSecP = iota
		archiveP
		awarenessP
		dmarcP
		fuzzP
	)
	const (
		m12 = iota
		monthly
		m36
		fuzzT
	)
	// The seat selector byte indexes fuzzSeats; past its end it is the
	// fuzzer's number.
	fuzzN := byte(len(fuzzSeats))
	// The seed story: 700 seats, AWARENESS added, reviewed, acknowledged,
	// submitted.
	f.Add([]byte{op(seats, emailSecP, m12), 7, op(add, awarenessP, m12), 7, op(review, 0, 0), 0, op(ack, 0, 0), 0, op(submit, 0, 0), 0}, "", "", 0)
	f.Add([]byte{op(seats, emailSecP, m12), 2, op(seats, emailSecP, m12), 0, op(seats, emailSecP, m12), fuzzN}, "", "", -5)
	f.Add([]byte{op(add, fuzzP, fuzzT), fuzzN, op(seats, fuzzP, fuzzT), 11, op(remove, fuzzP, 0), 0, op(review, 0, 0), 0}, "😀\u202e", "12 Month\x00", 150)
	f.Add([]byte{op(add, fuzzP, fuzzT), 1, op(review, 0, 0), 0, op(ack, 1, 0), 0}, "P-\u200d", "Monatlich", 0)
	f.Add([]byte{op(add, dmarcP, m12), 14, op(add, awarenessP, m12), 10, op(seats, archiveP, m12), 12, op(review, 0, 0), 0}, "", "", 0)
	f.Add([]byte{op(cancel, 0, 0), 0, op(seats, emailSecP, m12), 7, op(save, 0, 0), 0}, "", "", 0)
	f.Add([]byte{op(add, awarenessP, monthly), 5, op(add, awarenessP, m36), 5, op(add, emailSecP, m12), 5}, "", "", 0)
	f.Add([]byte{op(seats, emailSecP, m12), 15, op(add, awarenessP, m12), 17, op(seats, awarenessP, m12), 18}, "", "", math.MaxInt64)
	f.Add([]byte{op(add, fuzzP, fuzzT), fuzzN}, "'; DROP TABLE events; --", "%_\\", 1)
	f.Add([]byte{op(add, fuzzP, fuzzT), fuzzN}, "\xff\xfe", "\x00", 1)
	f.Add([]byte{op(seats, emailSecP, m12), 7, op(review, 0, 0), 0, op(ack, 2, 0), 0, op(submit, 1, 0), 0, op(seats2, emailSecP, 0), 4}, "", "", 0)

	f.Fuzz(func(t *testing.T, program []byte, code, term string, n int) {
		p := newQuoteProgram(t, code, term, n)
		for i := 0; i+1 < len(program) && i < 2*64; i += 2 {
			p.run(program[i], program[i+1])
		}
		p.checkReplay()
	})
}

func newQuoteProgram(t *testing.T, code, term string, n int) *quoteProgram {
	products := fixtureProducts(t)
	fuzzProduct := domain.Product{
		Code: code, Name: "Fuzz " + code, PerUser: true, Currency: "USD", TermTypes: []string{term},
		Tiers: []domain.Tier{{TermType: term, MinSeats: 1, UnitPrice: domain.MustMoney("2.50")}, {TermType: term, MinSeats: 100, UnitPrice: domain.MustMoney("2.25")}},
	}
	if _, err := fuzzProduct.Validate(); err == nil && !isFixtureCode(code) {
		products = append(products, fuzzProduct)
	}
	cat, err := domain.NewCatalog(products)
	if err != nil {
		t.Fatalf("NewCatalog: %v", err)
	}
	c := contoso(t)
	return &quoteProgram{
		t: t, cat: cat, customer: c, q: openQuote(t, c, quoteID), baseline: c.Lines(),
		codes: []string{emailSec, archive, awareness, dmarc, code},
		terms: []string{month12, "Monthly", "36 Month", term},
		seats: n,
	}
}

func isFixtureCode(code string) bool {
	for _, c := range []string{emailSec, archive, awareness, dmarc} {
		if c == code {
			return true
		}
	}
	return false
}

// run runs one command and checks what it did.
func (p *quoteProgram) run(op, seatsByte byte) {
	t, q := p.t, p.q
	t.Helper()
	cmd, arg := int(op%9), int(op/9)
	code, term := p.codes[arg%5], p.terms[(arg/5)%4]
	seats := p.seats
	if int(seatsByte) < len(fuzzSeats) {
		seats = fuzzSeats[seatsByte]
	}
	actor := alex
	if arg%2 == 1 {
		actor = kim
	}
	var name string
	var do func() error
	switch cmd {
	case 0:
		name, do = fmt.Sprintf("AddProduct(%q, %q, %d)", code, term, seats), func() error { return q.AddProduct(p.cat, code, term, seats) }
	case 1:
		name, do = fmt.Sprintf("RemoveProduct(%q)", code), func() error { return q.RemoveProduct(code) }
	case 2, 8:
		name, do = fmt.Sprintf("ChangeSeats(%q, %d)", code, seats), func() error { return q.ChangeSeats(p.cat, code, seats) }
	case 3:
		name, do = "Save", func() error { return q.Save(t0) }
	case 4:
		name, do = "Cancel", func() error { return q.Cancel(t0) }
	case 5:
		name, do = "Review", func() error { return q.Review(tReview) }
	case 6:
		msa, authorized := seatsByte&1 == 0, seatsByte&2 == 0
		name = fmt.Sprintf("Acknowledge(%t, %t, %s)", msa, authorized, actor.MSPID)
		do = func() error { return q.Acknowledge(msa, authorized, actor, tAck) }
	case 7:
		name, do = fmt.Sprintf("Submit(%s)", actor.MSPID), func() error { return q.Submit(p.customer, actor, tSubmit) }
	}

	changes, version, status, preview := len(q.Changes()), q.Version(), q.Status(), jsonOf(t, q.Preview())
	customerChanges := len(p.customer.Changes())
	err := noPanic(t, name, do)
	if err != nil {
		var de *domain.Error
		if !errors.As(err, &de) || de.Code.String() == "" || de.Detail == "" {
			t.Fatalf("%s: refused with %v (%T), not a *domain.Error with a code and a detail", name, err, err)
		}
		if len(q.Changes()) != changes || q.Version() != version || q.Status() != status || jsonOf(t, q.Preview()) != preview {
			t.Fatalf("%s was refused (%v) but changed the quote: %d → %d changes, version %d → %d, status %s → %s",
				name, err, changes, len(q.Changes()), version, q.Version(), status, q.Status())
		}
		if len(p.customer.Changes()) != customerChanges {
			t.Fatalf("%s was refused (%v) but amended the customer", name, err)
		}
	} else {
		recorded := len(q.Changes()) - changes
		if q.Version() != version+int64(recorded) {
			t.Fatalf("%s recorded %d events but moved the version %d → %d", name, recorded, version, q.Version())
		}
		if recorded > 1 {
			t.Fatalf("%s recorded %d events, want at most one", name, recorded)
		}
		if cmd == 7 {
			if p.submitted {
				t.Fatalf("a second Submit succeeded")
			}
			p.submitted = true
		}
	}
	p.checkInvariants(name)
}

// noPanic runs a command, making a panic a failure of the test rather than
// the end of the test binary.
func noPanic(t *testing.T, name string, do func() error) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s panicked: %v\n%s", name, r, debug.Stack())
		}
	}()
	return do()
}

func (p *quoteProgram) checkInvariants(after string) {
	t, q := p.t, p.q
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("after %s: "+format, append([]any{after}, args...)...)
	}
	nonNegative := func(what string, m domain.Money) {
		t.Helper()
		if m.Sign() < 0 {
			fail("%s is negative: %s", what, m)
		}
	}
	pv := q.Preview()
	if len(pv.CurrentProducts) != len(p.baseline) {
		fail("%d current products, the subscription has %d lines", len(pv.CurrentProducts), len(p.baseline))
	}
	sum := domain.Zero("USD")
	for i, l := range pv.CurrentProducts {
		b := p.baseline[i]
		if l.ProductCode != b.ProductCode || l.Seats != b.Seats || !l.UnitPrice.Equal(b.UnitPrice) {
			fail("current product %d is %+v, the subscription's line is %+v", i, l, b)
		}
		sum = sum.Add(l.MonthlyPayment)
	}
	if !sum.Equal(pv.PriorMonthlyTotal) {
		fail("prior total %s, the current products sum to %s", pv.PriorMonthlyTotal, sum)
	}
	// Changes come in pairs: -subscription, +new total above it.
	if len(pv.ChangesToExistingProducts)%2 != 0 {
		fail("%d changes to existing products, not pairs", len(pv.ChangesToExistingProducts))
	}
	newTotal := pv.PriorMonthlyTotal
	for i := 0; i+1 < len(pv.ChangesToExistingProducts); i += 2 {
		minus, plus := pv.ChangesToExistingProducts[i], pv.ChangesToExistingProducts[i+1]
		var base *domain.Line
		for j := range p.baseline {
			if p.baseline[j].ProductCode == minus.ProductCode {
				base = &p.baseline[j]
			}
		}
		switch {
		case base == nil || plus.ProductCode != minus.ProductCode:
			fail("a change of %s/%s, not a line of the subscription", minus.ProductCode, plus.ProductCode)
		case minus.Quantity != -base.Seats:
			fail("%s: the change takes away %d seats, the subscription has %d", base.ProductCode, -minus.Quantity, base.Seats)
		case plus.Quantity <= base.Seats || plus.Quantity > domain.MaxSeats:
			fail("%s: %d seats, below or at the subscription's %d, or above %d", base.ProductCode, plus.Quantity, base.Seats, domain.MaxSeats)
		}
		nonNegative(plus.ProductCode+" new price", plus.UnitPrice)
		nonNegative(plus.ProductCode+" new payment", plus.MonthlyPayment)
		if want := domain.Payment(plus.Quantity, plus.UnitPrice, "USD"); !want.Equal(plus.MonthlyPayment) {
			fail("%s: payment %s, %d × %s is %s", plus.ProductCode, plus.MonthlyPayment, plus.Quantity, plus.UnitPrice, want)
		}
		newTotal = newTotal.Add(minus.MonthlyPayment).Add(plus.MonthlyPayment)
	}
	seen := map[string]bool{}
	for _, a := range pv.AddedProducts {
		if seen[a.ProductCode] {
			fail("%s is added twice", a.ProductCode)
		}
		seen[a.ProductCode] = true
		if a.Seats < 1 || a.Seats > domain.MaxSeats {
			fail("added %s has %d seats", a.ProductCode, a.Seats)
		}
		for _, b := range p.baseline {
			if b.ProductCode == a.ProductCode {
				fail("%s is both on the subscription and added", a.ProductCode)
			}
		}
		nonNegative(a.ProductCode+" price", a.UnitPrice)
		nonNegative(a.ProductCode+" payment", a.MonthlyPayment)
		if want := domain.Payment(a.Seats, a.UnitPrice, "USD"); !want.Equal(a.MonthlyPayment) {
			fail("%s: payment %s, %d × %s is %s", a.ProductCode, a.MonthlyPayment, a.Seats, a.UnitPrice, want)
		}
		newTotal = newTotal.Add(a.MonthlyPayment)
	}
	if !newTotal.Equal(pv.NewMonthlyTotal) {
		fail("new total %s; prior + changes + added is %s", pv.NewMonthlyTotal, newTotal)
	}
	if !pv.NewMonthlyTotal.Sub(pv.PriorMonthlyTotal).Equal(pv.MonthlyDifference) {
		fail("difference %s, new - prior is %s", pv.MonthlyDifference, pv.NewMonthlyTotal.Sub(pv.PriorMonthlyTotal))
	}
	nonNegative("the prior total", pv.PriorMonthlyTotal)
	nonNegative("the new total", pv.NewMonthlyTotal)
	if pv.Version != q.Version() || pv.Status != q.Status() {
		fail("preview at version %d status %s, the quote at %d %s", pv.Version, pv.Status, q.Version(), q.Status())
	}

	s, err := q.Summary()
	if err != nil {
		if q.Status() == domain.StatusReviewed || q.Status() == domain.StatusSubmitted {
			fail("a %s quote has no summary: %v", q.Status(), err)
		}
		return
	}
	prior, current := domain.Zero("USD"), domain.Zero("USD")
	for _, l := range s.Lines {
		if l.CurrentQuantity < l.PriorQuantity || l.CurrentQuantity > domain.MaxSeats || l.PriorQuantity < 0 {
			fail("summary line %s: %d → %d seats", l.ProductCode, l.PriorQuantity, l.CurrentQuantity)
		}
		for _, m := range []domain.Money{l.PriorUnitPrice, l.CurrentUnitPrice, l.PriorPayment, l.CurrentPayment} {
			nonNegative("summary line "+l.ProductCode, m)
		}
		prior, current = prior.Add(l.PriorPayment), current.Add(l.CurrentPayment)
	}
	if !prior.Equal(s.PriorMonthlyTotal) || !current.Equal(s.NewMonthlyTotal) {
		fail("summary totals %s → %s; its lines sum to %s → %s", s.PriorMonthlyTotal, s.NewMonthlyTotal, prior, current)
	}
}

// checkReplay: the recorded events, stored and read back, rebuild the same
// quote (events are facts: loading never refuses what a command recorded).
// Strings that storage cannot keep as they are (invalid UTF-8) are left
// out: the HTTP and import layers never pass them (encoding/json replaces
// them on the way in).
func (p *quoteProgram) checkReplay() {
	t := p.t
	for _, s := range append(p.codes[4:], p.terms[3]) {
		if !utf8.ValidString(s) {
			return
		}
	}
	loaded, err := domain.LoadChangeQuote(roundTrip(t, p.q.Changes()))
	if err != nil {
		t.Fatalf("LoadChangeQuote of the recorded events: %v", err)
	}
	if got, want := jsonOf(t, loaded.Preview()), jsonOf(t, p.q.Preview()); got != want {
		t.Fatalf("the events rebuild another quote:\nrecorded %s\nrebuilt  %s", want, got)
	}
	gs, gerr := loaded.Summary()
	ws, werr := p.q.Summary()
	if (gerr == nil) != (werr == nil) || jsonOf(t, gs) != jsonOf(t, ws) {
		t.Fatalf("the events rebuild another summary:\nrecorded %s (%v)\nrebuilt  %s (%v)", jsonOf(t, ws), werr, jsonOf(t, gs), gerr)
	}
}

// FuzzOnboardCustomer: OnboardCustomer never panics; a refusal is a
// *domain.Error naming the field at fault; an accepted customer's lines
// are those given (prices with at least the minor unit), its total is
// the sum of its lines and not negative, and its event, stored and read
// back, rebuilds the same customer.
//
//	go test -run '^$' -fuzz '^FuzzOnboardCustomer$' -fuzztime 2m ./domain/
func FuzzOnboardCustomer(f *testing.F) {
	f.Add("cust-contoso", "msp-northwind", "Contoso Ltd", "USD", "EMAIL-SEC", "12 Month", 682, "3.25", "ARCHIVE", 682, "1.65")
	f.Add("c", "m", "Ünïcødé 😀 \u202eLtd", "JPY", "P", "Monthly", 1, "45", "Q", domain.MaxSeats, "0.001")
	f.Add("c\x00", "m", "A\x00B", "EUR", "P", "T", 0, "-0.01", "P", -1, "1e400")
	f.Add("'; DROP TABLE events; --", "%", "_\\", "usd", "P", " ", math.MaxInt64, "NaN", "", math.MinInt64, "")
	f.Add("c", "m", "n", "GBP", "P", "T", 1, "9999999999999999999999999999.999999999", "Q", 2, "0.00000000000000000001")
	f.Fuzz(func(t *testing.T, id, msp, name, currency, code1, term string, seats1 int, price1, code2 string, seats2 int, price2 string) {
		var lines []domain.Line
		for _, l := range []struct {
			code  string
			seats int
			price string
		}{{code1, seats1, price1}, {code2, seats2, price2}} {
			if l.code == "" && l.price == "" {
				continue
			}
			price, err := domain.ParseMoney(l.price)
			if err != nil {
				return // the importer refuses it before the domain sees it
			}
			lines = append(lines, domain.Line{ProductCode: l.code, ProductName: "Product " + l.code, TermType: term, PerUser: true, Seats: l.seats, UnitPrice: price})
		}
		var c *domain.Customer
		err := noPanic(t, "OnboardCustomer", func() error {
			var err error
			c, err = domain.OnboardCustomer(id, msp, name, currency, lines, t0)
			return err
		})
		if err != nil {
			var de *domain.Error
			if !errors.As(err, &de) || de.Field == "" || de.Detail == "" {
				t.Fatalf("refused with %v (%T), not a *domain.Error naming the field", err, err)
			}
			if c != nil {
				t.Fatalf("refused (%v) but returned a customer", err)
			}
			return
		}
		if c.ID() != id || c.MSPID() != msp || c.Name() != name || c.Currency() != currency || c.Version() != 1 || len(c.Changes()) != 1 {
			t.Fatalf("customer %s/%s/%s/%s version %d with %d events, want the input at version 1", c.ID(), c.MSPID(), c.Name(), c.Currency(), c.Version(), len(c.Changes()))
		}
		got := c.Lines()
		if len(got) != len(lines) {
			t.Fatalf("%d lines, given %d", len(got), len(lines))
		}
		minor, _ := domain.MinorUnits(currency)
		total := domain.Zero(currency)
		for i, l := range got {
			in := lines[i]
			if l.ProductCode != in.ProductCode || l.TermType != in.TermType || l.Seats != in.Seats || !l.UnitPrice.Equal(in.UnitPrice) {
				t.Fatalf("line %d is %+v, given %+v", i, l, in)
			}
			if l.Seats < 1 || l.Seats > domain.MaxSeats || l.UnitPrice.Sign() < 0 {
				t.Fatalf("accepted line %d with %d seats at %s", i, l.Seats, l.UnitPrice)
			}
			if places := -l.UnitPrice.Decimal().Exponent(); places < minor {
				t.Fatalf("line %d's price %s has fewer places than %s's %d", i, l.UnitPrice, currency, minor)
			}
			total = total.Add(domain.Payment(l.Seats, l.UnitPrice, currency))
		}
		if !total.Equal(c.MonthlyTotal()) || c.MonthlyTotal().Sign() < 0 {
			t.Fatalf("monthly total %s, the lines sum to %s", c.MonthlyTotal(), total)
		}
		if c.TotalUsers() < 0 || c.TotalUsers() > domain.MaxSeats {
			t.Fatalf("total users %d", c.TotalUsers())
		}
		for _, s := range []string{id, msp, name, currency, code1, code2, term} {
			if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				return // see checkReplay (NUL: PostgreSQL cannot store it; the importer must refuse it)
			}
		}
		loaded, err := domain.LoadCustomer(roundTrip(t, c.Changes()))
		if err != nil {
			t.Fatalf("LoadCustomer: %v", err)
		}
		if jsonOf(t, loaded.PricedLines()) != jsonOf(t, c.PricedLines()) || loaded.Name() != c.Name() || loaded.Version() != c.Version() {
			t.Fatalf("the event rebuilds another customer")
		}
	})
}
