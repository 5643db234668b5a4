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
// billing and auditors, so fields are only ever added.
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

// OrderSubmitted places the reviewed order; the quote is closed.
type OrderSubmitted struct {
	CustomerID        string      `json:"customer_id"`
	BaselineVersion   int64       `json:"baseline_version"`
	Lines             []OrderLine `json:"lines"`
	TotalUsers        int         `json:"total_users"`
	PriorMonthlyTotal Money       `json:"prior_monthly_total"`
	NewMonthlyTotal   Money       `json:"new_monthly_total"`
	MonthlyDifference Money       `json:"monthly_difference"`
	AcknowledgedBy    string      `json:"acknowledged_by"`
	AcknowledgedAt    time.Time   `json:"acknowledged_at"`
	SubmittedBy       string      `json:"submitted_by"`
	SubmittedAt       time.Time   `json:"submitted_at"`
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
// version and how to decode its data.
type eventKind struct {
	name          string
	schemaVersion int
	decode        func(data []byte) (Event, error)
}

func kindOf[T Event](schemaVersion int) eventKind {
	var zero T
	return eventKind{zero.EventType(), schemaVersion, func(data []byte) (Event, error) {
		var v T
		err := json.Unmarshal(data, &v)
		return v, err
	}}
}

var eventKinds = func() map[string]eventKind {
	m := map[string]eventKind{}
	for _, k := range []eventKind{
		kindOf[CustomerOnboarded](1),
		kindOf[SubscriptionAmended](1),
		kindOf[ChangeQuoteOpened](1),
		kindOf[ProductAdded](1),
		kindOf[ProductRemoved](1),
		kindOf[SeatsChanged](1),
		kindOf[QuoteSaved](1),
		kindOf[QuoteCancelled](1),
		kindOf[OrderReviewed](1),
		kindOf[AcknowledgementsGiven](1),
		kindOf[OrderSubmitted](1),
	} {
		m[k.name] = k
	}
	return m
}()

// EventTypes returns every event type of the contract with its current
// schema version.
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

// DecodeEvent turns stored data back into an event value. An unknown type
// or a schema version newer than this code knows is an error: silently
// dropping a fact would corrupt every state built on it.
func DecodeEvent(eventType string, schemaVersion int, data []byte) (Event, error) {
	k, ok := eventKinds[eventType]
	if !ok {
		return nil, fmt.Errorf("decode event: unknown type %q", eventType)
	}
	// Only the current version decodes into the current struct; an older one
	// needs an upcaster, and none exists while every type is at version 1.
	if schemaVersion != k.schemaVersion {
		return nil, fmt.Errorf("decode %s: schema version %d is not supported (current %d, and no upcaster from %d)",
			eventType, schemaVersion, k.schemaVersion, schemaVersion)
	}
	e, err := k.decode(data)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", eventType, err)
	}
	return e, nil
}
