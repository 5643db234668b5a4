package billing_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/shopspring/decimal"

	"github.com/upsell-dev/upsell/billing"
)

// Messages here are written by hand from the message contract (metadata
// ce_type, ce_subject, upsell_schema_version; OrderSubmitted v2 payload),
// as downstream billing sees them; relay_test checks that the relay's
// messages are read the same way.

// orderV2 is the payload of the seed story's OrderSubmitted at schema
// version 2.
const orderV2 = `{"customer_id":"cust-contoso","baseline_version":1,"lines":[` +
	`{"product_code":"EMAIL-SEC","product":"Email Security Cloud Gateway","term_type":"12 Month","per_user":true,"prior_quantity":682,"current_quantity":700,"prior_unit_price":"3.25","current_unit_price":"3.20","prior_payment":"2216.50","current_payment":"2240.00","quantity_change":18,"monthly_change":"23.50"},` +
	`{"product_code":"ARCHIVE","product":"Cloud Archive","term_type":"12 Month","per_user":true,"prior_quantity":682,"current_quantity":682,"prior_unit_price":"1.65","current_unit_price":"1.65","prior_payment":"1125.30","current_payment":"1125.30","quantity_change":0,"monthly_change":"0.00"},` +
	`{"product_code":"AWARENESS","product":"Security Awareness Training","term_type":"12 Month","per_user":true,"prior_quantity":0,"current_quantity":700,"prior_unit_price":"0.00","current_unit_price":"1.25","prior_payment":"0.00","current_payment":"875.00","quantity_change":700,"monthly_change":"875.00"}],` +
	`"total_users":700,"prior_monthly_total":"3341.80","new_monthly_total":"4240.30","monthly_difference":"898.50",` +
	`"acknowledged_by":"u-sam","acknowledged_at":"2025-03-14T09:50:00Z","submitted_by":"u-alex","submitted_at":"2025-03-14T10:00:00Z"}`

func msg(id, eventType, schemaVersion, subject, payload string) *message.Message {
	m := message.NewMessage(id, message.Payload(payload))
	m.Metadata.Set("ce_specversion", "1.0")
	m.Metadata.Set("ce_id", id)
	m.Metadata.Set("ce_type", eventType)
	m.Metadata.Set("ce_subject", subject)
	if schemaVersion != "" {
		m.Metadata.Set("upsell_schema_version", schemaVersion)
	}
	return m
}

func order(id string) *message.Message {
	return msg(id, "OrderSubmitted", "2", "quote-"+id, orderV2)
}

type recorder struct {
	orders []billing.Order
	fail   error
}

func (r *recorder) handle(_ context.Context, o billing.Order) error {
	if r.fail != nil {
		return r.fail
	}
	r.orders = append(r.orders, o)
	return nil
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestConsumerReadsAnOrder(t *testing.T) {
	t.Parallel()
	var r recorder
	c := billing.NewConsumer(10, r.handle)
	if err := c.Process(context.Background(), order("ev-1")); err != nil {
		t.Fatal(err)
	}
	if len(r.orders) != 1 {
		t.Fatalf("%d orders handled, want 1", len(r.orders))
	}
	o := r.orders[0]
	if o.EventID != "ev-1" || o.QuoteID != "quote-ev-1" || o.CustomerID != "cust-contoso" || o.SubmittedBy != "u-alex" ||
		!o.SubmittedAt.Equal(time.Date(2025, 3, 14, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("order %+v", o)
	}
	if o.PriorMonthlyTotal.String() != "3341.8" || !o.NewMonthlyTotal.Equal(dec("4240.30")) || o.MonthlyDifference.StringFixed(2) != "898.50" {
		t.Errorf("totals %s, %s, %s", o.PriorMonthlyTotal, o.NewMonthlyTotal, o.MonthlyDifference)
	}
	want := []billing.Line{
		{ProductCode: "EMAIL-SEC", Product: "Email Security Cloud Gateway", TermType: "12 Month", PriorQuantity: 682, CurrentQuantity: 700, QuantityChange: 18, MonthlyChange: dec("23.50")},
		{ProductCode: "ARCHIVE", Product: "Cloud Archive", TermType: "12 Month", PriorQuantity: 682, CurrentQuantity: 682, QuantityChange: 0, MonthlyChange: dec("0")},
		{ProductCode: "AWARENESS", Product: "Security Awareness Training", TermType: "12 Month", PriorQuantity: 0, CurrentQuantity: 700, QuantityChange: 700, MonthlyChange: dec("875")},
	}
	if len(o.Lines) != len(want) {
		t.Fatalf("lines %+v", o.Lines)
	}
	for i, l := range o.Lines {
		w := want[i]
		if l.ProductCode != w.ProductCode || l.Product != w.Product || l.TermType != w.TermType || l.PriorQuantity != w.PriorQuantity ||
			l.CurrentQuantity != w.CurrentQuantity || l.QuantityChange != w.QuantityChange || !l.MonthlyChange.Equal(w.MonthlyChange) {
			t.Errorf("line %d: %+v, want %+v", i, l, w)
		}
	}
	if c.Duplicates != 0 {
		t.Errorf("Duplicates = %d", c.Duplicates)
	}
}

// Money is decimal: amounts no float64 holds exactly come through exactly.
func TestConsumerDecodesMoneyExactly(t *testing.T) {
	t.Parallel()
	payload := `{"customer_id":"c","submitted_by":"u","submitted_at":"2025-03-14T10:00:00Z",` +
		`"prior_monthly_total":"0.10","new_monthly_total":"0.30","monthly_difference":"0.20",` +
		`"lines":[{"product_code":"A","product":"A","term_type":"1 Month","prior_quantity":1,"current_quantity":3,"quantity_change":2,"monthly_change":"0.20"},` +
		`{"product_code":"B","product":"B","term_type":"1 Month","prior_quantity":1,"current_quantity":2,"quantity_change":1,"monthly_change":"90071992547409.93"},` +
		`{"product_code":"C","product":"C","term_type":"1 Month","prior_quantity":5,"current_quantity":9,"quantity_change":4,"monthly_change":"-12.35"}]}`
	var r recorder
	c := billing.NewConsumer(10, r.handle)
	if err := c.Process(context.Background(), msg("ev-money", "OrderSubmitted", "2", "q", payload)); err != nil {
		t.Fatal(err)
	}
	o := r.orders[0]
	// 0.10 + 0.20 is 0.30 exactly, which it is not in float64.
	if !o.PriorMonthlyTotal.Add(o.MonthlyDifference).Equal(o.NewMonthlyTotal) || o.NewMonthlyTotal.StringFixed(2) != "0.30" {
		t.Errorf("0.10 + 0.20 = %s, new total %s", o.PriorMonthlyTotal.Add(o.MonthlyDifference), o.NewMonthlyTotal)
	}
	if got := o.Lines[1].MonthlyChange.String(); got != "90071992547409.93" {
		t.Errorf("a large amount reads as %s", got)
	}
	if got := o.Lines[2].MonthlyChange.StringFixed(2); got != "-12.35" {
		t.Errorf("a negative change reads as %s", got)
	}
}

// The relay delivers at least once: the same event (same UUID) twice is
// handled once, and the copy is counted.
func TestConsumerDropsDuplicates(t *testing.T) {
	t.Parallel()
	var r recorder
	c := billing.NewConsumer(10, r.handle)
	ctx := context.Background()
	for _, m := range []*message.Message{order("ev-1"), order("ev-1"), order("ev-2"), order("ev-1"),
		msg("ev-3", "SubscriptionAmended", "1", "cust", `{}`), msg("ev-3", "SubscriptionAmended", "1", "cust", `{}`)} {
		if err := c.Process(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.orders) != 2 || r.orders[0].EventID != "ev-1" || r.orders[1].EventID != "ev-2" {
		t.Errorf("handled %d orders, want ev-1 and ev-2 once each: %+v", len(r.orders), r.orders)
	}
	if c.Duplicates != 3 {
		t.Errorf("Duplicates = %d, want 3", c.Duplicates)
	}
}

// Events other than OrderSubmitted are acknowledged and not handled, at
// whatever schema version.
func TestConsumerIgnoresOtherEvents(t *testing.T) {
	t.Parallel()
	var r recorder
	c := billing.NewConsumer(10, r.handle)
	for i, m := range []*message.Message{
		msg("a", "SubscriptionAmended", "1", "cust-contoso", `{"lines": []}`),
		msg("b", "ChangeQuoteOpened", "7", "q", `not even JSON`),
		msg("c", "", "", "", ``),
	} {
		if err := c.Process(context.Background(), m); err != nil {
			t.Errorf("message %d (%s): %v", i, m.Metadata.Get("ce_type"), err)
		}
	}
	if len(r.orders) != 0 || c.Duplicates != 0 {
		t.Errorf("handled %+v, %d duplicates", r.orders, c.Duplicates)
	}
}

// An OrderSubmitted at a schema version this consumer does not read, or
// that it cannot decode, is an error (so the message is not acknowledged
// and comes again), not a skipped order; it is not remembered as seen.
func TestConsumerRefusesWhatItCannotRead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, version, payload, inErr string
	}{
		{"schema version 1", "1", orderV2, `schema version "1", this consumer reads 2`},
		{"schema version 3", "3", orderV2, `schema version "3"`},
		{"no schema version", "", orderV2, `schema version ""`},
		{"malformed payload", "2", `{"lines": "no"}`, "OrderSubmitted ev-x"},
		{"money as garbage", "2", `{"new_monthly_total": "twelve"}`, "OrderSubmitted ev-x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r recorder
			c := billing.NewConsumer(10, r.handle)
			err := c.Process(context.Background(), msg("ev-x", "OrderSubmitted", tc.version, "q", tc.payload))
			if err == nil || !strings.Contains(err.Error(), tc.inErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.inErr)
			}
			if len(r.orders) != 0 {
				t.Errorf("handled %+v", r.orders)
			}
			// Not remembered: the same event readable is handled.
			if err := c.Process(context.Background(), order("ev-x")); err != nil || len(r.orders) != 1 || c.Duplicates != 0 {
				t.Errorf("the event again, readable: %v, %d orders, %d duplicates", err, len(r.orders), c.Duplicates)
			}
		})
	}
}

// A failing Handle is an error, and the event is handled again when it
// comes again.
func TestConsumerHandleFailure(t *testing.T) {
	t.Parallel()
	r := recorder{fail: errors.New("ledger down")}
	c := billing.NewConsumer(10, r.handle)
	err := c.Process(context.Background(), order("ev-1"))
	if err == nil || !strings.Contains(err.Error(), "ledger down") || !strings.Contains(err.Error(), "quote-ev-1") {
		t.Fatalf("err = %v", err)
	}
	r.fail = nil
	if err := c.Process(context.Background(), order("ev-1")); err != nil || len(r.orders) != 1 || c.Duplicates != 0 {
		t.Errorf("after the failure: %v, %d orders, %d duplicates", err, len(r.orders), c.Duplicates)
	}
}

func TestSeenForgetsTheOldest(t *testing.T) {
	t.Parallel()
	s := billing.NewSeen(3)
	for _, id := range []string{"a", "b", "c"} {
		s.Add(id)
	}
	for _, id := range []string{"a", "b", "c"} {
		if !s.Seen(id) {
			t.Errorf("%s forgotten within the capacity", id)
		}
	}
	s.Add("d")
	if s.Seen("a") {
		t.Error("a is still remembered beyond the capacity")
	}
	for _, id := range []string{"b", "c", "d"} {
		if !s.Seen(id) {
			t.Errorf("%s forgotten", id)
		}
	}
	s.Add("e")
	s.Add("f")
	if s.Seen("b") || s.Seen("c") || !s.Seen("d") || !s.Seen("e") || !s.Seen("f") || s.Seen("x") {
		t.Errorf("after six adds to three places: b %t c %t d %t e %t f %t", s.Seen("b"), s.Seen("c"), s.Seen("d"), s.Seen("e"), s.Seen("f"))
	}

	// The consumer's window: a copy arriving after more than capacity
	// other events is not recognised.
	var r recorder
	c := billing.NewConsumer(2, r.handle)
	for _, id := range []string{"o1", "o2", "o1", "o3", "o1"} {
		if err := c.Process(context.Background(), order(id)); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.orders) != 4 || c.Duplicates != 1 {
		t.Errorf("with capacity 2: %d orders handled, %d duplicates; want 4 and 1", len(r.orders), c.Duplicates)
	}
}

// subscriber is a message.Subscriber over a channel the test feeds.
type subscriber struct {
	ch    chan *message.Message
	topic string
}

func (s *subscriber) Subscribe(_ context.Context, topic string) (<-chan *message.Message, error) {
	s.topic = topic
	return s.ch, nil
}
func (s *subscriber) Close() error { return nil }

func acked(t *testing.T, m *message.Message) bool {
	t.Helper()
	select {
	case <-m.Acked():
		return true
	case <-m.Nacked():
		return false
	case <-time.After(5 * time.Second):
		t.Fatalf("message %s neither acked nor nacked", m.UUID)
		return false
	}
}

// Run acknowledges what it handled or skipped, and stops at a message it
// cannot read, nacking it, with the error.
func TestConsumerRun(t *testing.T) {
	t.Parallel()
	var r recorder
	c := billing.NewConsumer(10, r.handle)
	sub := &subscriber{ch: make(chan *message.Message)}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background(), sub, "upsell_events") }()
	for _, m := range []*message.Message{order("ev-1"), msg("ev-2", "QuoteSaved", "1", "q", `{}`), order("ev-1")} {
		sub.ch <- m
		if !acked(t, m) {
			t.Errorf("%s %s was nacked", m.UUID, m.Metadata.Get("ce_type"))
		}
	}
	bad := msg("ev-3", "OrderSubmitted", "9", "q", orderV2)
	sub.ch <- bad
	if acked(t, bad) {
		t.Error("an unreadable order was acknowledged")
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), `schema version "9"`) {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after an unreadable order")
	}
	if sub.topic != "upsell_events" || len(r.orders) != 1 || c.Duplicates != 1 {
		t.Errorf("topic %q, %d orders, %d duplicates", sub.topic, len(r.orders), c.Duplicates)
	}

	// It returns nil when its context ends, and when the subscription closes.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- c.Run(ctx, &subscriber{ch: make(chan *message.Message)}, "t") }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after its context ended: %v", err)
	}
	closed := make(chan *message.Message)
	close(closed)
	if err := c.Run(context.Background(), &subscriber{ch: closed}, "t"); err != nil {
		t.Errorf("Run on a closed subscription: %v", err)
	}
}

func seedOrder() billing.Order {
	return billing.Order{
		EventID: "0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", QuoteID: "5f0c6b1e-2f43-4a8e-9d3c-7b1a2e4f6c80", CustomerID: "cust-contoso",
		SubmittedAt: time.Date(2025, 3, 14, 11, 0, 0, 0, time.FixedZone("CET", 3600)), SubmittedBy: "u-alex",
		Lines: []billing.Line{
			{ProductCode: "EMAIL-SEC", Product: "Email Security Cloud Gateway", TermType: "12 Month", PriorQuantity: 682, CurrentQuantity: 700, QuantityChange: 18, MonthlyChange: dec("23.5")},
			{ProductCode: "ARCHIVE", Product: "Cloud Archive", TermType: "12 Month", PriorQuantity: 682, CurrentQuantity: 682, QuantityChange: 0, MonthlyChange: dec("0")},
			{ProductCode: "AWARENESS", Product: "Security Awareness Training", TermType: "12 Month", PriorQuantity: 0, CurrentQuantity: 700, QuantityChange: 700, MonthlyChange: dec("875.00")},
		},
		PriorMonthlyTotal: dec("3341.8"), NewMonthlyTotal: dec("4240.30"), MonthlyDifference: dec("898.5"),
	}
}

func TestPrint(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := billing.Print(&b, seedOrder()); err != nil {
		t.Fatal(err)
	}
	want := "order 5f0c6b1e-2f43-4a8e-9d3c-7b1a2e4f6c80  customer cust-contoso  submitted 2025-03-14T10:00:00Z by u-alex  (event 0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b)\n" +
		"  PRODUCT                                   TERM      QUANTITY   Δ QUANTITY  Δ MONTHLY\n" +
		"  Email Security Cloud Gateway (EMAIL-SEC)  12 Month  682 → 700  +18         +23.50\n" +
		"  Cloud Archive (ARCHIVE)                   12 Month  682 → 682  +0          +0.00\n" +
		"  Security Awareness Training (AWARENESS)   12 Month  0 → 700    +700        +875.00\n" +
		"  monthly total 3341.80 → 4240.30 (+898.50)\n" +
		"\n"
	if b.String() != want {
		t.Errorf("Print:\n%s\nwant:\n%s", b.String(), want)
	}

	// Decreases keep their minus sign.
	o := billing.Order{EventID: "e", QuoteID: "q", CustomerID: "c", SubmittedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), SubmittedBy: "u",
		Lines:             []billing.Line{{ProductCode: "X", Product: "Xy", TermType: "1 Month", PriorQuantity: 100, CurrentQuantity: 120, QuantityChange: 20, MonthlyChange: dec("-12.3")}},
		PriorMonthlyTotal: dec("500"), NewMonthlyTotal: dec("487.7"), MonthlyDifference: dec("-12.3")}
	b.Reset()
	if err := billing.Print(&b, o); err != nil {
		t.Fatal(err)
	}
	want = "order q  customer c  submitted 2026-01-02T03:04:05Z by u  (event e)\n" +
		"  PRODUCT  TERM     QUANTITY   Δ QUANTITY  Δ MONTHLY\n" +
		"  Xy (X)   1 Month  100 → 120  +20         -12.30\n" +
		"  monthly total 500.00 → 487.70 (-12.30)\n" +
		"\n"
	if b.String() != want {
		t.Errorf("Print of a decrease:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestPrintJSON(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := billing.PrintJSON(&b, seedOrder()); err != nil {
		t.Fatal(err)
	}
	want := `{"event_id":"0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","quote_id":"5f0c6b1e-2f43-4a8e-9d3c-7b1a2e4f6c80","customer_id":"cust-contoso",` +
		`"submitted_at":"2025-03-14T10:00:00Z","submitted_by":"u-alex","prior_monthly_total":"3341.80","new_monthly_total":"4240.30","monthly_difference":"898.50",` +
		`"lines":[{"product_code":"EMAIL-SEC","product":"Email Security Cloud Gateway","term_type":"12 Month","prior_quantity":682,"current_quantity":700,"quantity_change":18,"monthly_change":"23.50"},` +
		`{"product_code":"ARCHIVE","product":"Cloud Archive","term_type":"12 Month","prior_quantity":682,"current_quantity":682,"quantity_change":0,"monthly_change":"0.00"},` +
		`{"product_code":"AWARENESS","product":"Security Awareness Training","term_type":"12 Month","prior_quantity":0,"current_quantity":700,"quantity_change":700,"monthly_change":"875.00"}]}` + "\n"
	if b.String() != want {
		t.Errorf("PrintJSON:\n%s\nwant:\n%s", b.String(), want)
	}
	// An order without lines has "lines": [], not null; one object a line.
	b.Reset()
	o := seedOrder()
	o.Lines = nil
	if err := billing.PrintJSON(&b, o); err != nil {
		t.Fatal(err)
	}
	if s := b.String(); !strings.HasSuffix(s, `"lines":[]}`+"\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("PrintJSON without lines: %s", s)
	}
}
