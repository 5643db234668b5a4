// Package billing is an example of downstream billing: a consumer of the
// events the relay publishes, written as a billing team would write theirs,
// against the message contract only (docs/events.md), not against
// Upsell's Go types. `upsell billing-tail` runs it.
//
// What it shows:
//   - subscribe with any Watermill message.Subscriber (the SQL topic or
//     NATS JetStream);
//   - de-duplicate on the message UUID, which is the event id: the relay
//     delivers at least once, so a republished event must change nothing;
//   - take only the events it needs (OrderSubmitted) by the ce_type
//     metadata, and read their payload with decimal money, never float;
//   - ack only after the order is handled, so a crash redelivers it.
package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/shopspring/decimal"
)

// Order is what billing needs of a submitted change order: per line, how
// the quantity and the monthly amount change.
type Order struct {
	EventID           string
	QuoteID           string // the stream id (ce_subject)
	CustomerID        string
	SubmittedAt       time.Time
	SubmittedBy       string
	Lines             []Line
	PriorMonthlyTotal decimal.Decimal
	NewMonthlyTotal   decimal.Decimal
	MonthlyDifference decimal.Decimal
}

// Line is one product's change.
type Line struct {
	ProductCode     string
	Product         string
	TermType        string
	PriorQuantity   int
	CurrentQuantity int
	QuantityChange  int             // current − prior
	MonthlyChange   decimal.Decimal // current payment − prior payment
}

// orderSubmitted is the payload of OrderSubmitted at schema version 2 (see
// docs/events.md); the relay always publishes the current version.
type orderSubmitted struct {
	CustomerID        string          `json:"customer_id"`
	PriorMonthlyTotal decimal.Decimal `json:"prior_monthly_total"`
	NewMonthlyTotal   decimal.Decimal `json:"new_monthly_total"`
	MonthlyDifference decimal.Decimal `json:"monthly_difference"`
	SubmittedBy       string          `json:"submitted_by"`
	SubmittedAt       time.Time       `json:"submitted_at"`
	Lines             []struct {
		ProductCode     string          `json:"product_code"`
		Product         string          `json:"product"`
		TermType        string          `json:"term_type"`
		PriorQuantity   int             `json:"prior_quantity"`
		CurrentQuantity int             `json:"current_quantity"`
		QuantityChange  int             `json:"quantity_change"`
		MonthlyChange   decimal.Decimal `json:"monthly_change"`
	} `json:"lines"`
}

// Consumer turns messages into orders, each event once.
type Consumer struct {
	seen *Seen
	// Handle is called once per submitted order; an error leaves the
	// message unacknowledged, so it is delivered again.
	Handle func(ctx context.Context, o Order) error
	// Duplicates counts the messages dropped as already seen.
	Duplicates int
}

// NewConsumer remembers the last capacity event ids to drop duplicates.
// Duplicates come from a relay that published a batch again after a
// crash, so they arrive soon after the first copy; a billing system that
// must survive its own restarts keeps the ids in its database, in the
// transaction that records the order.
func NewConsumer(capacity int, handle func(ctx context.Context, o Order) error) *Consumer {
	return &Consumer{seen: NewSeen(capacity), Handle: handle}
}

// Run handles the messages of sub's topic until ctx ends or the
// subscription closes. When ctx ends it closes sub, so that what was
// acknowledged is stored (a subscription cancelled by its context can drop
// the acknowledgements of its last batch, which then come again).
func (c *Consumer) Run(ctx context.Context, sub message.Subscriber, topic string) error {
	msgs, err := sub.Subscribe(context.WithoutCancel(ctx), topic)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", topic, err)
	}
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-msgs:
			if !ok {
				return nil
			}
			if err := c.Process(ctx, msg); err != nil {
				msg.Nack()
				return err
			}
			msg.Ack()
		}
	}
}

// Process handles one message; nil means it may be acknowledged.
func (c *Consumer) Process(ctx context.Context, msg *message.Message) error {
	if c.seen.Seen(msg.UUID) {
		c.Duplicates++
		return nil
	}
	if msg.Metadata.Get("ce_type") == "OrderSubmitted" {
		o, err := decodeOrder(msg)
		if err != nil {
			return err
		}
		if err := c.Handle(ctx, o); err != nil {
			return fmt.Errorf("handle order %s: %w", o.QuoteID, err)
		}
	}
	c.seen.Add(msg.UUID)
	return nil
}

func decodeOrder(msg *message.Message) (Order, error) {
	if v := msg.Metadata.Get("upsell_schema_version"); v != "2" {
		return Order{}, fmt.Errorf("OrderSubmitted %s: schema version %q, this consumer reads 2", msg.UUID, v)
	}
	var p orderSubmitted
	if err := json.Unmarshal(msg.Payload, &p); err != nil {
		return Order{}, fmt.Errorf("OrderSubmitted %s: %w", msg.UUID, err)
	}
	o := Order{
		EventID: msg.UUID, QuoteID: msg.Metadata.Get("ce_subject"), CustomerID: p.CustomerID,
		SubmittedAt: p.SubmittedAt, SubmittedBy: p.SubmittedBy,
		PriorMonthlyTotal: p.PriorMonthlyTotal, NewMonthlyTotal: p.NewMonthlyTotal, MonthlyDifference: p.MonthlyDifference,
	}
	for _, l := range p.Lines {
		o.Lines = append(o.Lines, Line{
			ProductCode: l.ProductCode, Product: l.Product, TermType: l.TermType,
			PriorQuantity: l.PriorQuantity, CurrentQuantity: l.CurrentQuantity,
			QuantityChange: l.QuantityChange, MonthlyChange: l.MonthlyChange,
		})
	}
	return o, nil
}

// Seen is a bounded set of recent message ids: the oldest is forgotten
// when it is full.
type Seen struct {
	ids  map[string]struct{}
	ring []string
	next int
}

// NewSeen remembers up to capacity ids.
func NewSeen(capacity int) *Seen {
	capacity = max(capacity, 1)
	return &Seen{ids: make(map[string]struct{}, capacity), ring: make([]string, capacity)}
}

// Seen reports whether id was added and not yet forgotten.
func (s *Seen) Seen(id string) bool { _, ok := s.ids[id]; return ok }

// Add remembers id.
func (s *Seen) Add(id string) {
	if old := s.ring[s.next]; old != "" {
		delete(s.ids, old)
	}
	s.ring[s.next] = id
	s.ids[id] = struct{}{}
	s.next = (s.next + 1) % len(s.ring)
}
