package domain

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Status is where a change quote stands. It is a closed set.
type Status struct{ s string }

var (
	StatusDraft     = Status{"draft"}
	StatusSaved     = Status{"saved"}
	StatusReviewed  = Status{"reviewed"}
	StatusSubmitted = Status{"submitted"}
	StatusCancelled = Status{"cancelled"}
)

// Statuses lists every status.
var Statuses = []Status{StatusDraft, StatusSaved, StatusReviewed, StatusSubmitted, StatusCancelled}

// ParseStatus reads a status word.
func ParseStatus(s string) (Status, error) {
	for _, st := range Statuses {
		if st.s == s {
			return st, nil
		}
	}
	return Status{}, fmt.Errorf("unknown quote status %q", s)
}

func (s Status) String() string { return s.s }

// Closed reports whether the quote refuses every further command.
func (s Status) Closed() bool { return s == StatusSubmitted || s == StatusCancelled }

// MarshalJSON writes the status word.
func (s Status) MarshalJSON() ([]byte, error) { return json.Marshal(s.s) }

// UnmarshalJSON reads a status word; an unknown word is an error.
func (s *Status) UnmarshalJSON(b []byte) error {
	var word string
	if err := json.Unmarshal(b, &word); err != nil {
		return err
	}
	st, err := ParseStatus(word)
	if err != nil {
		return err
	}
	*s = st
	return nil
}

// ChangeQuote is an MSP's proposal to change a customer's subscription: it
// starts from a baseline (the subscription as it was when opened), adds
// products and raises seat counts, is reviewed, acknowledged and submitted.
type ChangeQuote struct {
	opened    ChangeQuoteOpened
	changed   map[string]Line // baseline product code -> the line with its new seats and price
	added     []Line
	status    Status
	review    *OrderReviewed
	acks      *AcknowledgementsGiven
	submitted *OrderSubmitted
	stream
}

// OpenChangeQuote opens a quote on the customer's current subscription.
// Another MSP's customer does not exist for the actor.
func OpenChangeQuote(id uuid.UUID, customer *Customer, mspName string, by Actor, at time.Time) (*ChangeQuote, error) {
	if id == uuid.Nil {
		return nil, fmt.Errorf("open change quote: nil quote id")
	}
	if customer == nil || customer.MSPID() != by.MSPID {
		return nil, newError(CodeNotFound, "customer not found")
	}
	q := &ChangeQuote{}
	q.record(ChangeQuoteOpened{
		QuoteID: id, CustomerID: customer.ID(), CustomerName: customer.Name(),
		MSPID: customer.MSPID(), MSPName: mspName, Currency: customer.Currency(),
		BaselineVersion: customer.Version(), Baseline: customer.Lines(),
		OpenedBy: by.UserID, OpenedAt: at.UTC(),
	})
	return q, nil
}

// LoadChangeQuote rebuilds a quote from its stream's events, oldest first.
func LoadChangeQuote(history []Event) (*ChangeQuote, error) {
	if len(history) == 0 {
		return nil, newError(CodeNotFound, "change quote not found")
	}
	return ReplayChangeQuote(nil, history)
}

// ReplayChangeQuote applies a stream's stored events, oldest first, to q,
// the quote as its earlier events left it, and returns it; q nil starts
// from nothing, and events must then begin with ChangeQuoteOpened. It lets
// a reader of the log carry a quote from one batch of events to the next
// instead of loading its history again.
func ReplayChangeQuote(q *ChangeQuote, events []Event) (*ChangeQuote, error) {
	if q == nil {
		if len(events) == 0 {
			return nil, newError(CodeNotFound, "change quote not found")
		}
		if _, ok := events[0].(ChangeQuoteOpened); !ok {
			return nil, fmt.Errorf("change quote stream starts with %s, not ChangeQuoteOpened", events[0].EventType())
		}
		q = &ChangeQuote{}
	}
	for _, e := range events {
		if err := q.apply(e); err != nil {
			return nil, err
		}
	}
	return q, nil
}

func (q *ChangeQuote) ID() uuid.UUID          { return q.opened.QuoteID }
func (q *ChangeQuote) CustomerID() string     { return q.opened.CustomerID }
func (q *ChangeQuote) MSPID() string          { return q.opened.MSPID }
func (q *ChangeQuote) Currency() string       { return q.opened.Currency }
func (q *ChangeQuote) Status() Status         { return q.status }
func (q *ChangeQuote) BaselineVersion() int64 { return q.opened.BaselineVersion }

// AddProduct adds a catalog product on a term with a number of seats. A
// product already on the subscription has its seats changed instead, and a
// product can be added once per quote.
func (q *ChangeQuote) AddProduct(catalog *Catalog, code, termType string, seats int) error {
	if err := q.checkOpen(); err != nil {
		return err
	}
	p, err := catalog.Product(code)
	if err != nil {
		return err
	}
	if q.baselineIndex(code) >= 0 {
		return newError(CodeProductAlreadyPresent, "%s is already on the subscription: change its seats instead", code)
	}
	if q.addedIndex(code) >= 0 {
		return newError(CodeProductAlreadyPresent, "%s was already added to this quote", code)
	}
	if p.Currency != q.opened.Currency {
		return newError(CodeCurrencyMismatch, "%s is priced in %s, the customer pays in %s", code, p.Currency, q.opened.Currency)
	}
	price, err := p.UnitPrice(termType, seats)
	if err != nil {
		return err
	}
	q.record(ProductAdded{
		ProductCode: p.Code, ProductName: p.Name, TermType: termType,
		PerUser: p.PerUser, Seats: seats, UnitPrice: price,
	})
	return nil
}

// RemoveProduct takes a product this quote added off it again. Products on
// the subscription cannot be removed: an upsell never lowers a quantity.
func (q *ChangeQuote) RemoveProduct(code string) error {
	if err := q.checkOpen(); err != nil {
		return err
	}
	if q.addedIndex(code) < 0 {
		if q.baselineIndex(code) >= 0 {
			return newError(CodeProductNotAdded, "%s is on the current subscription; an upsell cannot remove it", code)
		}
		return newError(CodeProductNotAdded, "%s was not added to this quote", code)
	}
	q.record(ProductRemoved{ProductCode: code})
	return nil
}

// ChangeSeats sets the new total number of seats of a product (682 plus 18
// more is 700). A total below the subscription's quantity is refused; a
// total equal to it means "no change" for that line. A total equal to what
// the quote already has records nothing.
func (q *ChangeQuote) ChangeSeats(catalog *Catalog, code string, totalSeats int) error {
	if err := q.checkOpen(); err != nil {
		return err
	}
	current, prior, ok := q.line(code)
	if !ok {
		if _, err := catalog.Product(code); err != nil {
			return err
		}
		return newError(CodeProductNotOnSubscription, "%s is not on the subscription: add it as a product", code)
	}
	if totalSeats < prior {
		return newError(CodeSeatsDecrease, "%s has %d seats; an upsell cannot lower it to %d", code, prior, totalSeats)
	}
	if problem := seatsProblem(totalSeats); problem != "" {
		return newError(CodeInvalidSeats, "%s", problem)
	}
	if totalSeats == current.Seats {
		return nil
	}
	var price Money
	if i := q.baselineIndex(code); i >= 0 && totalSeats == prior {
		price = q.opened.Baseline[i].UnitPrice // back to the contracted line
	} else {
		p, err := catalog.Product(code)
		if err != nil {
			return err
		}
		if p.Currency != q.opened.Currency {
			return newError(CodeCurrencyMismatch, "%s is now priced in %s, the customer pays in %s", code, p.Currency, q.opened.Currency)
		}
		if price, err = p.UnitPrice(current.TermType, totalSeats); err != nil {
			return err
		}
	}
	q.record(SeatsChanged{
		ProductCode: code, TermType: current.TermType, PriorSeats: prior,
		PreviousSeats: current.Seats, NewSeats: totalSeats, UnitPrice: price,
	})
	return nil
}

// Save keeps the quote so the MSP can list, reopen and edit it later. Saving
// is not an edit: a reviewed quote stays reviewed, with its summary and its
// acknowledgements.
func (q *ChangeQuote) Save(at time.Time) error {
	if err := q.checkOpen(); err != nil {
		return err
	}
	q.record(QuoteSaved{SavedAt: at.UTC()})
	return nil
}

// Cancel discards the quote; it is closed from then on.
func (q *ChangeQuote) Cancel(at time.Time) error {
	if err := q.checkOpen(); err != nil {
		return err
	}
	q.record(QuoteCancelled{CancelledAt: at.UTC()})
	return nil
}

// Review freezes the priced lines as the Change Order Summary. It needs at
// least one change, and it asks for the acknowledgements anew.
func (q *ChangeQuote) Review(at time.Time) error {
	if err := q.checkOpen(); err != nil {
		return err
	}
	if len(q.changed) == 0 && len(q.added) == 0 {
		return newError(CodeNothingToReview, "the quote changes nothing: add a product or raise seats first")
	}
	lines := q.orderLines()
	prior, current := orderTotals(lines, q.opened.Currency)
	q.record(OrderReviewed{
		Lines: lines, TotalUsers: orderTotalUsers(lines),
		PriorMonthlyTotal: prior, NewMonthlyTotal: current, ReviewedAt: at.UTC(),
	})
	return nil
}

// Acknowledge records the two acknowledgements, both required, after the
// latest review.
func (q *ChangeQuote) Acknowledge(msaGovernsOrder, authorizedToOrder bool, by Actor, at time.Time) error {
	if err := q.checkActor(by); err != nil {
		return err
	}
	if err := q.checkOpen(); err != nil {
		return err
	}
	if q.status != StatusReviewed {
		return newError(CodeNotReviewed, "review the order before acknowledging it")
	}
	if !msaGovernsOrder || !authorizedToOrder {
		return newError(CodeAcknowledgementsMissing, "both acknowledgements must be given: msa_governs_order and authorized_to_order")
	}
	q.record(AcknowledgementsGiven{
		MSAGovernsOrder: true, AuthorizedToOrder: true,
		By: by.UserID, MSPID: by.MSPID, At: at.UTC(),
	})
	return nil
}

// Submit places the reviewed, acknowledged order and amends the customer's
// subscription. It is refused when the customer changed since the quote was
// opened: the MSP must open a new quote. The caller appends the quote's and
// the customer's new events atomically, the customer's at the version it was
// loaded at, so a concurrent submission loses.
func (q *ChangeQuote) Submit(customer *Customer, by Actor, at time.Time) error {
	if err := q.checkActor(by); err != nil {
		return err
	}
	if err := q.checkOpen(); err != nil {
		return err
	}
	if q.status != StatusReviewed {
		return newError(CodeNotReviewed, "review the order before submitting it")
	}
	if q.acks == nil {
		return newError(CodeAcknowledgementsMissing, "give both acknowledgements after the latest review before submitting")
	}
	if customer == nil || customer.ID() != q.opened.CustomerID {
		return fmt.Errorf("submit: the quote's customer %s was not given", q.opened.CustomerID)
	}
	if customer.Version() != q.opened.BaselineVersion {
		return newError(CodeBaselineChanged, "%s's subscription changed since this quote was opened (version %d, now %d): open a new quote",
			customer.Name(), q.opened.BaselineVersion, customer.Version())
	}
	r := q.review
	order := OrderSubmitted{
		CustomerID: q.opened.CustomerID, BaselineVersion: q.opened.BaselineVersion,
		Lines: r.Lines, TotalUsers: r.TotalUsers,
		PriorMonthlyTotal: r.PriorMonthlyTotal, NewMonthlyTotal: r.NewMonthlyTotal,
		MonthlyDifference: r.NewMonthlyTotal.Sub(r.PriorMonthlyTotal),
		AcknowledgedBy:    q.acks.By, AcknowledgedAt: q.acks.At,
		SubmittedBy: by.UserID, SubmittedAt: at.UTC(),
	}
	q.record(order)
	customer.amend(q.opened.QuoteID, order)
	return nil
}

// checkActor keeps the acts that record who did them (acknowledging,
// submitting) to users of the quote's own MSP. Another MSP's quote does not
// exist for them.
func (q *ChangeQuote) checkActor(by Actor) error {
	if by.MSPID != q.opened.MSPID {
		return newError(CodeNotFound, "change quote not found")
	}
	return nil
}

func (q *ChangeQuote) checkOpen() error {
	if q.status.Closed() {
		return newError(CodeQuoteClosed, "the quote is %s and accepts no further changes", q.status)
	}
	return nil
}

// line returns the quote's current line for a product and the
// subscription's quantity of it (0 for an added product).
func (q *ChangeQuote) line(code string) (current Line, prior int, ok bool) {
	if i := q.baselineIndex(code); i >= 0 {
		base := q.opened.Baseline[i]
		if l, changed := q.changed[code]; changed {
			return l, base.Seats, true
		}
		return base, base.Seats, true
	}
	if i := q.addedIndex(code); i >= 0 {
		return q.added[i], 0, true
	}
	return Line{}, 0, false
}

func (q *ChangeQuote) baselineIndex(code string) int {
	return slices.IndexFunc(q.opened.Baseline, func(l Line) bool { return l.ProductCode == code })
}

func (q *ChangeQuote) addedIndex(code string) int {
	return slices.IndexFunc(q.added, func(l Line) bool { return l.ProductCode == code })
}

func (q *ChangeQuote) record(e Event) { q.stream.record(e, q.apply) }

// apply changes state by one event. Events are facts: apply never refuses
// one that a command could have recorded.
func (q *ChangeQuote) apply(e Event) error {
	switch e := e.(type) {
	case ChangeQuoteOpened:
		q.opened = e
		q.changed = map[string]Line{}
		q.status = StatusDraft
	case ProductAdded:
		q.added = append(q.added, Line(e))
		q.edited()
	case ProductRemoved:
		q.added = slices.DeleteFunc(q.added, func(l Line) bool { return l.ProductCode == e.ProductCode })
		q.edited()
	case SeatsChanged:
		if i := q.addedIndex(e.ProductCode); i >= 0 {
			q.added[i].Seats, q.added[i].UnitPrice = e.NewSeats, e.UnitPrice
		} else if i := q.baselineIndex(e.ProductCode); i >= 0 {
			if e.NewSeats == q.opened.Baseline[i].Seats {
				delete(q.changed, e.ProductCode)
			} else {
				l := q.opened.Baseline[i]
				l.Seats, l.UnitPrice = e.NewSeats, e.UnitPrice
				q.changed[e.ProductCode] = l
			}
		} else {
			return fmt.Errorf("change quote: SeatsChanged for %s, which the quote does not have", e.ProductCode)
		}
		q.edited()
	case QuoteSaved:
		if q.status != StatusReviewed {
			q.status = StatusSaved
		}
	case QuoteCancelled:
		q.status = StatusCancelled
	case OrderReviewed:
		q.status, q.review, q.acks = StatusReviewed, &e, nil
	case AcknowledgementsGiven:
		q.acks = &e
	case OrderSubmitted:
		q.status, q.submitted = StatusSubmitted, &e
	default:
		return fmt.Errorf("change quote: unexpected event %s", e.EventType())
	}
	q.version++
	return nil
}

// edited applies the rule that any edit after review sends the quote back to
// draft: it must be reviewed and acknowledged again. A saved quote stays
// saved while it is edited.
func (q *ChangeQuote) edited() {
	if q.status == StatusReviewed {
		q.status = StatusDraft
	}
	q.review, q.acks = nil, nil
}
