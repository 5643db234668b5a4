package schemas_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/schemas"
)

// The times of testdata/OrderSubmitted.v1.json, the seed story's order as
// the version-1 encoder wrote it.
var (
	tAck    = time.Date(2025, 3, 14, 9, 50, 0, 0, time.UTC)
	tSubmit = time.Date(2025, 3, 14, 10, 0, 0, 0, time.UTC)
)

// acknowledgedSeedQuote imports a fresh copy of Contoso Ltd into the
// package database and drives the seed story through the application up
// to the acknowledgements (by Sam at tAck): the state in which the order
// of testdata/OrderSubmitted.v1.json was submitted.
func acknowledgedSeedQuote(t *testing.T) (svc *app.Service, customerID string, quoteID uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	pool := testdb.Pool(t, "schemas")
	f := fixture(t)
	customerID = "cust-contoso-" + uuid.NewString()[:8]
	f.Customers = f.Customers[:1]
	f.Customers[0].ID = customerID
	if _, err := importer.Import(ctx, eventstore.New(pool), f, domain.FixedClock{T: tAck.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	svc = app.New(pool, app.WithClock(domain.FixedClock{T: tAck}))
	m := app.Meta{Actor: alex}
	for _, step := range []func() (app.Result, error){
		func() (app.Result, error) { return svc.OpenChangeQuote(ctx, m, customerID) },
		func() (app.Result, error) { return svc.ChangeSeats(ctx, m, quoteID, "EMAIL-SEC", 700) },
		func() (app.Result, error) { return svc.AddProduct(ctx, m, quoteID, "AWARENESS", "12 Month", 700) },
		func() (app.Result, error) { return svc.ReviewOrder(ctx, m, quoteID) },
		func() (app.Result, error) { return svc.Acknowledge(ctx, app.Meta{Actor: sam}, quoteID, true, true) },
	} {
		res, err := step()
		if err != nil {
			t.Fatal(err)
		}
		quoteID = res.QuoteID
	}
	return svc, customerID, quoteID
}

// appendOrder stores an OrderSubmitted of the given schema version and data
// on the quote, and the customer's SubscriptionAmended, in one transaction
// at the versions the application loaded: what SubmitOrder does, but with
// the payload an older (or newer) encoder wrote.
func appendOrder(t *testing.T, svc *app.Service, customerID string, quoteID uuid.UUID, version int, data []byte) domain.OrderSubmitted {
	t.Helper()
	ctx := context.Background()
	q, c := submitted(t, svc, customerID, quoteID)
	decided := q.Changes()[0].(domain.OrderSubmitted)
	typ, amendedVersion, amended, err := domain.EncodeEvent(c.Changes()[0])
	if err != nil {
		t.Fatal(err)
	}
	md := eventstore.Metadata{MSPID: alex.MSPID, UserID: alex.UserID, CorrelationID: "req-v1", CausationID: "cmd-v1"}
	if _, err := svc.Store().Append(ctx,
		eventstore.Append{StreamID: quoteID.String(), StreamType: domain.StreamChangeQuote, ExpectedVersion: q.ExpectedVersion(),
			Events: []eventstore.NewEvent{{Type: "OrderSubmitted", SchemaVersion: version, Data: data, Metadata: md}}},
		eventstore.Append{StreamID: customerID, StreamType: domain.StreamCustomer, ExpectedVersion: c.ExpectedVersion(),
			Events: []eventstore.NewEvent{{Type: typ, SchemaVersion: amendedVersion, Data: amended, Metadata: md}}},
	); err != nil {
		t.Fatal(err)
	}
	return decided
}

// An OrderSubmitted stored at schema version 1 (before the per-line deltas)
// is read by the application as version 2: the same event the domain
// decides today. Auditors still see what was stored.
func TestStoredV1OrderSubmittedLoadsAsV2(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc, customerID, quoteID := acknowledgedSeedQuote(t)
	v1 := strings.Replace(strings.TrimSpace(string(mustRead(t, "testdata/OrderSubmitted.v1.json"))),
		`"customer_id":"cust-contoso"`, fmt.Sprintf("%q:%q", "customer_id", customerID), 1)
	if err := schemas.Validate("OrderSubmitted", 1, []byte(v1)); err != nil {
		t.Fatal(err)
	}
	decided := appendOrder(t, svc, customerID, quoteID, 1, []byte(v1))

	// What an auditor reads: the event as stored, at version 1.
	stored, err := svc.QuoteHistory(ctx, alex, quoteID, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last := stored[len(stored)-1]
	if last.Type != "OrderSubmitted" || last.SchemaVersion != 1 || strings.Contains(string(last.Data), "quantity_change") {
		t.Fatalf("stored %s v%d: %s", last.Type, last.SchemaVersion, last.Data)
	}

	// What the application reads: version 2, deltas included.
	events, err := app.DecodeEvents(stored)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := events[len(events)-1].(domain.OrderSubmitted)
	if !ok || fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", decided) {
		t.Fatalf("the stored v1 order reads as\n%+v\nthe domain decides\n%+v", events[len(events)-1], decided)
	}
	_, ver, again, err := domain.EncodeEvent(got)
	if err != nil || ver != 2 || !strings.Contains(string(again), `"quantity_change":18,"monthly_change":"23.50"`) {
		t.Fatalf("re-encoded: v%d %s (%v)", ver, again, err)
	}
	q, err := svc.LoadQuote(ctx, alex, quoteID, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := q.Summary(); q.Status() != domain.StatusSubmitted || err != nil || s.SubmittedAt == nil || !s.SubmittedAt.Equal(tSubmit) {
		t.Fatalf("loaded quote: status %s, summary %+v, %v", q.Status(), s, err)
	}
	c, err := svc.LoadCustomer(ctx, alex, customerID)
	if err != nil || c.Version() != 2 || c.TotalUsers() != 700 || c.MonthlyTotal().String() != "4240.30" {
		t.Fatalf("customer after the v1 order: %v", err)
	}

	// What the relay publishes: the current version, valid against its schema.
	current, up, err := domain.Upcast(last.Type, last.SchemaVersion, last.Data)
	if err != nil || current != 2 {
		t.Fatalf("Upcast = v%d, %v", current, err)
	}
	if err := schemas.Validate(last.Type, current, up); err != nil {
		t.Fatal(err)
	}
}

// An event stored at a schema version newer than the code knows is refused
// with a clear error: nothing is rebuilt from a fact the code cannot read.
func TestStoredFutureVersionIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc, customerID, quoteID := acknowledgedSeedQuote(t)
	q, _ := submitted(t, svc, customerID, quoteID)
	_, _, v2, err := domain.EncodeEvent(q.Changes()[0])
	if err != nil {
		t.Fatal(err)
	}
	appendOrder(t, svc, customerID, quoteID, 3, v2)

	check := func(what string, err error) {
		t.Helper()
		var ue *domain.UnsupportedSchemaError
		if !errors.As(err, &ue) || ue.EventType != "OrderSubmitted" || ue.SchemaVersion != 3 || ue.Current != 2 ||
			!strings.Contains(err.Error(), "OrderSubmitted schema version 3 is newer than this code knows (current 2)") {
			t.Fatalf("%s: err = %v, want an UnsupportedSchemaError for v3", what, err)
		}
	}
	_, err = svc.LoadQuote(ctx, alex, quoteID, eventstore.LoadOptions{})
	check("LoadQuote", err)
	stored, err := svc.QuoteHistory(ctx, alex, quoteID, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err) // the auditor's view lists what is stored
	}
	_, err = app.DecodeEvents(stored)
	check("DecodeEvents", err)
	_, err = svc.SaveQuote(ctx, app.Meta{Actor: alex}, quoteID)
	check("SaveQuote", err)
	_, _, err = domain.Upcast("OrderSubmitted", 3, stored[len(stored)-1].Data)
	check("Upcast", err)
	if err := schemas.Validate("OrderSubmitted", 3, stored[len(stored)-1].Data); err == nil {
		t.Fatal("a schema for OrderSubmitted v3 exists")
	}
}

// submitted loads the quote and its customer and lets the domain submit
// the order at tSubmit, as SubmitOrder would: the events are recorded, not
// stored.
func submitted(t *testing.T, svc *app.Service, customerID string, quoteID uuid.UUID) (*domain.ChangeQuote, *domain.Customer) {
	t.Helper()
	ctx := context.Background()
	q, err := svc.LoadQuote(ctx, alex, quoteID, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := svc.LoadCustomer(ctx, alex, customerID)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Submit(c, alex, tSubmit); err != nil {
		t.Fatal(err)
	}
	return q, c
}
