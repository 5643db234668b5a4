package domain

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Stream types: the kinds of aggregate whose events the log holds.
const (
	StreamChangeQuote = "change_quote"
	StreamCustomer    = "customer"
)

// Event is a fact recorded by an aggregate. Events are past tense and are
// never edited or deleted; their JSON form is the contract with downstream
// billing and auditors (schemas/events/<Type>.v<N>.json, docs/events.md), so
// fields are only ever added, each addition in a new schema version with an
// upcaster from the previous one (upcast.go).
type Event interface {
	EventType() string
}

// Line is a subscription line: a product on a term with a seat count at a
// monthly per-seat price.
type Line struct {
	ProductCode string `json:"product_code"`
	ProductName string `json:"product_name"`
	TermType    string `json:"term_type"`
	PerUser     bool   `json:"per_user"`
	Seats       int    `json:"seats"`
	UnitPrice   Money  `json:"unit_price"`
}

// OrderLine is one line of a Change Order: what a product was and what it
// becomes. A product added by the quote has prior quantity 0 and prior
// price and payment 0.00.
type OrderLine struct {
	ProductCode      string `json:"product_code"`
	Product          string `json:"product"`
	TermType         string `json:"term_type"`
	PerUser          bool   `json:"per_user"`
	PriorQuantity    int    `json:"prior_quantity"`
	CurrentQuantity  int    `json:"current_quantity"`
	PriorUnitPrice   Money  `json:"prior_unit_price"`
	CurrentUnitPrice Money  `json:"current_unit_price"`
	PriorPayment     Money  `json:"prior_payment"`
	CurrentPayment   Money  `json:"current_payment"`
}

// Actor is who issued a command: a user of an MSP.
type Actor struct {
	MSPID  string `json:"msp_id"`
	UserID string `json:"user_id"`
}

// CustomerOnboarded starts a customer's stream with its current subscription.
type CustomerOnboarded struct {
	CustomerID  string    `json:"customer_id"`
	MSPID       string    `json:"msp_id"`
	Name        string    `json:"name"`
	Currency    string    `json:"currency"`
	Lines       []Line    `json:"lines"`
	OnboardedAt time.Time `json:"onboarded_at"`
}

// SubscriptionAmended records a submitted change order on the customer: each
// line's current quantity and price become its seats and contracted price.
type SubscriptionAmended struct {
	CustomerID      string      `json:"customer_id"`
	QuoteID         uuid.UUID   `json:"quote_id"`
	Lines           []OrderLine `json:"lines"`
	NewMonthlyTotal Money       `json:"new_monthly_total"`
	AmendedAt       time.Time   `json:"amended_at"`
}

// ChangeQuoteOpened starts a quote with its baseline: the customer's
// subscription, and the version of the customer's stream, as they were.
type ChangeQuoteOpened struct {
	QuoteID         uuid.UUID `json:"quote_id"`
	CustomerID      string    `json:"customer_id"`
	CustomerName    string    `json:"customer_name"`
	MSPID           string    `json:"msp_id"`
	MSPName         string    `json:"msp_name"`
	Currency        string    `json:"currency"`
	BaselineVersion int64     `json:"baseline_version"`
	Baseline        []Line    `json:"baseline"`
	OpenedBy        string    `json:"opened_by"`
	OpenedAt        time.Time `json:"opened_at"`
}

// ProductAdded puts a catalog product on the quote, priced for its seats.
type ProductAdded struct {
	ProductCode string `json:"product_code"`
	ProductName string `json:"product_name"`
	TermType    string `json:"term_type"`
	PerUser     bool   `json:"per_user"`
	Seats       int    `json:"seats"`
	UnitPrice   Money  `json:"unit_price"`
}

// ProductRemoved takes a product the quote added off it again.
type ProductRemoved struct {
	ProductCode string `json:"product_code"`
}

// SeatsChanged sets a product's total seats on the quote. PriorSeats is the
// subscription's quantity (0 for a product the quote added), PreviousSeats
// the quote's total before this change, NewSeats the new total.
type SeatsChanged struct {
	ProductCode   string `json:"product_code"`
	TermType      string `json:"term_type"`
	PriorSeats    int    `json:"prior_seats"`
	PreviousSeats int    `json:"previous_seats"`
	NewSeats      int    `json:"new_seats"`
	UnitPrice     Money  `json:"unit_price"`
}

// QuoteSaved keeps the quote to come back to later.
type QuoteSaved struct {
	SavedAt time.Time `json:"saved_at"`
}

// QuoteCancelled discards the quote; it is closed.
type QuoteCancelled struct {
	CancelledAt time.Time `json:"cancelled_at"`
}

// OrderReviewed freezes the priced lines of the Change Order Summary.
type OrderReviewed struct {
	Lines             []OrderLine `json:"lines"`
	TotalUsers        int         `json:"total_users"`
	PriorMonthlyTotal Money       `json:"prior_monthly_total"`
	NewMonthlyTotal   Money       `json:"new_monthly_total"`
	ReviewedAt        time.Time   `json:"reviewed_at"`
}

// AcknowledgementsGiven records the two acknowledgements and who gave them.
type AcknowledgementsGiven struct {
	MSAGovernsOrder   bool      `json:"msa_governs_order"`
	AuthorizedToOrder bool      `json:"authorized_to_order"`
	By                string    `json:"by"`
	MSPID             string    `json:"msp_id"`
	At                time.Time `json:"at"`
}

// OrderSubmitted places the reviewed order; the quote is closed. Its lines
// are the reviewed ones; in JSON (schema version 2) each also carries the
// per-line deltas billing needs (see SubmittedLines).
type OrderSubmitted struct {
	CustomerID        string         `json:"customer_id"`
	BaselineVersion   int64          `json:"baseline_version"`
	Lines             SubmittedLines `json:"lines"`
	TotalUsers        int            `json:"total_users"`
	PriorMonthlyTotal Money          `json:"prior_monthly_total"`
	NewMonthlyTotal   Money          `json:"new_monthly_total"`
	MonthlyDifference Money          `json:"monthly_difference"`
	AcknowledgedBy    string         `json:"acknowledged_by"`
	AcknowledgedAt    time.Time      `json:"acknowledged_at"`
	SubmittedBy       string         `json:"submitted_by"`
	SubmittedAt       time.Time      `json:"submitted_at"`
}

// QuantityChange is the seats the order adds to the line: current quantity
// minus prior quantity (never negative: an upsell never lowers a quantity).
func (l OrderLine) QuantityChange() int { return l.CurrentQuantity - l.PriorQuantity }

// MonthlyChange is what the line's monthly payment changes by: current
// payment minus prior payment, exact (both are rounded to the currency's
// minor unit, so the difference is too). It may be negative when a higher
// tier's lower unit price outweighs the added seats.
func (l OrderLine) MonthlyChange() Money { return l.CurrentPayment.Sub(l.PriorPayment) }

// SubmittedLines are the lines of a submitted order. In Go they are the
// reviewed OrderLines, whose deltas are the methods QuantityChange and
// MonthlyChange; in JSON each line also carries them as quantity_change
// (an integer) and monthly_change (Money), which downstream billing reads
// (OrderSubmitted schema version 2). Reading requires both and checks that
// they agree with the line: a fact that contradicts itself is refused.
// Being a []OrderLine, it takes the reviewed lines as they are, and gives
// them as they are to SubscriptionAmended, whose lines stay version 1.
type SubmittedLines []OrderLine

// submittedLineJSON is one line of OrderSubmitted v2 as it travels.
type submittedLineJSON struct {
	OrderLine
	QtyChange *int   `json:"quantity_change"`
	PayChange *Money `json:"monthly_change"`
}

// MarshalJSON writes each line with its quantity_change and monthly_change.
func (ls SubmittedLines) MarshalJSON() ([]byte, error) {
	out := make([]submittedLineJSON, len(ls))
	for i, l := range ls {
		q, m := l.QuantityChange(), l.MonthlyChange()
		out[i] = submittedLineJSON{OrderLine: l, QtyChange: &q, PayChange: &m}
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads lines of OrderSubmitted v2. A line without its deltas
// (a version 1 line that was not upcast) or with deltas that do not match
// its quantities and payments is an error.
func (ls *SubmittedLines) UnmarshalJSON(b []byte) error {
	var in []submittedLineJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	if in == nil {
		*ls = nil
		return nil
	}
	out := make(SubmittedLines, len(in))
	for i, l := range in {
		switch {
		case l.QtyChange == nil:
			return fmt.Errorf("lines[%d] (%s): quantity_change is missing", i, l.ProductCode)
		case l.PayChange == nil:
			return fmt.Errorf("lines[%d] (%s): monthly_change is missing", i, l.ProductCode)
		case *l.QtyChange != l.QuantityChange():
			return fmt.Errorf("lines[%d] (%s): quantity_change %d is not current_quantity %d - prior_quantity %d",
				i, l.ProductCode, *l.QtyChange, l.CurrentQuantity, l.PriorQuantity)
		case !l.PayChange.Equal(l.MonthlyChange()):
			return fmt.Errorf("lines[%d] (%s): monthly_change %s is not current_payment %s - prior_payment %s",
				i, l.ProductCode, *l.PayChange, l.CurrentPayment, l.PriorPayment)
		}
		out[i] = l.OrderLine
	}
	*ls = out
	return nil
}

func (CustomerOnboarded) EventType() string     { return "CustomerOnboarded" }
func (SubscriptionAmended) EventType() string   { return "SubscriptionAmended" }
func (ChangeQuoteOpened) EventType() string     { return "ChangeQuoteOpened" }
func (ProductAdded) EventType() string          { return "ProductAdded" }
func (ProductRemoved) EventType() string        { return "ProductRemoved" }
func (SeatsChanged) EventType() string          { return "SeatsChanged" }
func (QuoteSaved) EventType() string            { return "QuoteSaved" }
func (QuoteCancelled) EventType() string        { return "QuoteCancelled" }
func (OrderReviewed) EventType() string         { return "OrderReviewed" }
func (AcknowledgementsGiven) EventType() string { return "AcknowledgementsGiven" }
func (OrderSubmitted) EventType() string        { return "OrderSubmitted" }

// eventKind describes one event type of the contract: its current schema
// version and how to decode its data of that version: fast, the
// hand-written decoder (fastjson.go), which may decline, and decode,
// encoding/json, which decides whatever fast declines.
type eventKind struct {
	name          string
	schemaVersion int
	fast          func(data []byte) (Event, bool)
	decode        func(data []byte) (Event, error)
}

func kindOf[T Event](schemaVersion int, read func(*fastDec, *T)) eventKind {
	var zero T
	return eventKind{zero.EventType(), schemaVersion,
		func(data []byte) (Event, bool) {
			v, ok := decodeFast(data, read)
			if !ok {
				return nil, false
			}
			return v, true
		},
		func(data []byte) (Event, error) {
			var v T
			err := json.Unmarshal(data, &v)
			return v, err
		}}
}

var eventKinds = func() map[string]eventKind {
	m := map[string]eventKind{}
	for _, k := range []eventKind{
		kindOf(1, readCustomerOnboarded),
		kindOf(1, readSubscriptionAmended),
		kindOf(1, readChangeQuoteOpened),
		kindOf(1, readProductAdded),
		kindOf(1, readProductRemoved),
		kindOf(1, readSeatsChanged),
		kindOf(1, readQuoteSaved),
		kindOf(1, readQuoteCancelled),
		kindOf(1, readOrderReviewed),
		kindOf(1, readAcknowledgementsGiven),
		kindOf(2, readOrderSubmitted),
	} {
		m[k.name] = k
	}
	return m
}()

// EventTypes returns every event type of the contract with its current
// schema version (the one EncodeEvent writes).
func EventTypes() map[string]int {
	out := make(map[string]int, len(eventKinds))
	for name, k := range eventKinds {
		out[name] = k.schemaVersion
	}
	return out
}

// EncodeEvent returns an event's type, schema version and JSON data.
func EncodeEvent(e Event) (eventType string, schemaVersion int, data []byte, err error) {
	k, ok := eventKinds[e.EventType()]
	if !ok {
		return "", 0, nil, fmt.Errorf("encode event: unregistered type %s", e.EventType())
	}
	data, err = json.Marshal(e)
	if err != nil {
		return "", 0, nil, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	return e.EventType(), k.schemaVersion, data, nil
}

// DecodeEvent turns stored data back into an event value. Data of an older
// schema version is upcast to the current one first (see Upcast). An
// unknown type, or a schema version this code cannot read (one newer than
// it knows, or an older one without upcasters), is an
// *UnsupportedSchemaError: silently dropping a fact would corrupt every
// state built on it.
func DecodeEvent(eventType string, schemaVersion int, data []byte) (Event, error) {
	return decodeEvent(eventType, schemaVersion, data, true)
}

// decodeEvent is DecodeEvent, with the hand-written decoder tried first or
// not at all (the tests compare the two).
func decodeEvent(eventType string, schemaVersion int, data []byte, fast bool) (Event, error) {
	_, current, err := Upcast(eventType, schemaVersion, data)
	if err != nil {
		return nil, err
	}
	k := eventKinds[eventType]
	if fast {
		if e, ok := k.fast(current); ok {
			return e, nil
		}
	}
	e, err := k.decode(current)
	if err != nil {
		return nil, fmt.Errorf("decode %s (schema version %d): %w", eventType, schemaVersion, err)
	}
	return e, nil
}
