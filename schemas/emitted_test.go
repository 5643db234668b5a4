package schemas_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/migrations"
	"github.com/upsell-dev/upsell/schemas"
)

var (
	alex = domain.Actor{MSPID: "msp-northwind", UserID: "u-alex"}
	sam  = domain.Actor{MSPID: "msp-northwind", UserID: "u-sam"}
	kim  = domain.Actor{MSPID: "msp-tailspin", UserID: "u-kim"}
)

// fixture is the import example, parsed.
func fixture(t *testing.T) *importer.File {
	t.Helper()
	f, err := importer.Parse(strings.NewReader(string(mustRead(t, "../fixtures/import-example.json"))))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// pristine is a migrated database of the test's own, so that every event
// in it is one this test caused.
func pristine(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testdb.Empty(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := migrations.Apply(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

// The system's events, driven through the real application on a real
// database and read back from it, each match the schema of their type and
// stored schema version, which is the current one. The drive must produce
// every event type the domain knows, so that coverage cannot shrink
// unnoticed when a type is added.
func TestEveryEmittedEventMatchesItsSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pristine(t)
	store := eventstore.New(pool)

	// Onboarding: the fixture's customers, and one with no subscription yet.
	f := fixture(t)
	f.Customers = append(f.Customers, importer.Customer{ID: "cust-newco", MSPID: "msp-northwind", Name: "Newco", Currency: "USD",
		Subscriptions: []importer.Subscription{}})
	if _, err := importer.Import(ctx, store, f, domain.SystemClock{}); err != nil {
		t.Fatal(err)
	}
	svc := app.New(pool) // the system clock: times with fractional seconds
	// do("what")(svc.Command(...)) fails the test unless the command
	// appended something.
	do := func(what string) func(app.Result, error) app.Result {
		return func(res app.Result, err error) app.Result {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if len(res.Events) == 0 {
				t.Fatalf("%s appended nothing", what)
			}
			return res
		}
	}
	m := app.Meta{Actor: alex, CorrelationID: "req-schemas-1"}

	// The seed story, with every kind of edit: Contoso from 682 to 700
	// seats, a product added, another added and removed again, an added
	// product's seats changed, saved, reviewed, acknowledged, submitted.
	q := do("open")(svc.OpenChangeQuote(ctx, m, "cust-contoso")).QuoteID
	do("raise EMAIL-SEC")(svc.ChangeSeats(ctx, m, q, "EMAIL-SEC", 700))
	do("add AWARENESS")(svc.AddProduct(ctx, m, q, "AWARENESS", "12 Month", 700))
	do("add DMARC")(svc.AddProduct(ctx, m, q, "DMARC", "12 Month", 3))
	do("remove DMARC")(svc.RemoveProduct(ctx, m, q, "DMARC"))
	do("raise AWARENESS")(svc.ChangeSeats(ctx, m, q, "AWARENESS", 1000))
	do("save")(svc.SaveQuote(ctx, m, q))
	do("review")(svc.ReviewOrder(ctx, m, q))
	do("acknowledge")(svc.Acknowledge(ctx, app.Meta{Actor: sam}, q, true, true))
	do("submit")(svc.SubmitOrder(ctx, m, q))

	// A second quote on the amended Contoso (baseline version 2): a seat
	// change taken back to the contracted quantity, then cancelled.
	q2 := do("open again")(svc.OpenChangeQuote(ctx, m, "cust-contoso")).QuoteID
	do("raise ARCHIVE")(svc.ChangeSeats(ctx, m, q2, "ARCHIVE", 750))
	do("ARCHIVE back")(svc.ChangeSeats(ctx, m, q2, "ARCHIVE", 682))
	do("cancel")(svc.CancelQuote(ctx, m, q2))

	// A customer without a subscription buys a product not sold per user:
	// an empty baseline, total users 0.
	q3 := do("open Newco")(svc.OpenChangeQuote(ctx, m, "cust-newco")).QuoteID
	do("add DMARC to Newco")(svc.AddProduct(ctx, m, q3, "DMARC", "12 Month", 2))
	do("review Newco")(svc.ReviewOrder(ctx, m, q3))
	do("acknowledge Newco")(svc.Acknowledge(ctx, m, q3, true, true))
	do("submit Newco")(svc.SubmitOrder(ctx, m, q3))

	// Another MSP; an edit after review (back to draft), a second review,
	// a save that keeps it reviewed, a tier whose price drops.
	mk := app.Meta{Actor: kim}
	q4 := do("open Fabrikam")(svc.OpenChangeQuote(ctx, mk, "cust-fabrikam")).QuoteID
	do("raise Fabrikam")(svc.ChangeSeats(ctx, mk, q4, "EMAIL-SEC", 600))
	do("review Fabrikam")(svc.ReviewOrder(ctx, mk, q4))
	do("raise Fabrikam again")(svc.ChangeSeats(ctx, mk, q4, "EMAIL-SEC", 700))
	do("review Fabrikam again")(svc.ReviewOrder(ctx, mk, q4))
	do("save Fabrikam")(svc.SaveQuote(ctx, mk, q4))
	do("acknowledge Fabrikam")(svc.Acknowledge(ctx, mk, q4, true, true))
	do("submit Fabrikam")(svc.SubmitOrder(ctx, mk, q4))

	// Every event in the database, in log order. The drive has ended, so
	// reading what is committed skips nothing.
	var all []eventstore.Event
	for after := (eventstore.Cursor{}); ; {
		batch, next, err := eventstore.ReadCommittedTx(ctx, pool, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		all, after = append(all, batch...), next
	}
	if len(all) < 30 {
		t.Fatalf("the database holds %d events", len(all))
	}

	streamOf := map[string]string{"CustomerOnboarded": domain.StreamCustomer, "SubscriptionAmended": domain.StreamCustomer}
	seen := map[string]int{}
	for _, e := range all {
		seen[e.Type]++
		current, known := domain.CurrentSchemaVersion(e.Type)
		if !known || e.SchemaVersion != current {
			t.Errorf("%s %s v%d: stored at schema version %d, the current is %d (%t)", e.StreamID, e.Type, e.Version, e.SchemaVersion, current, known)
		}
		if err := schemas.Validate(e.Type, e.SchemaVersion, e.Data); err != nil {
			t.Errorf("%s v%d (position %d): %v\ndata: %s", e.StreamID, e.Version, e.Position, err, e.Data)
		}
		// The envelope docs/events.md promises.
		wantStream := streamOf[e.Type]
		if wantStream == "" {
			wantStream = domain.StreamChangeQuote
		}
		if e.ID == uuid.Nil || e.StreamID == "" || e.StreamType != wantStream || e.Version < 1 || e.Position < 1 ||
			e.TransactionID == 0 || e.RecordedAt.IsZero() {
			t.Errorf("%s: envelope %+v", e.Type, e)
		}
		if md := e.Metadata; md.MSPID == "" || md.UserID == "" || md.CorrelationID == "" || md.CausationID == "" {
			t.Errorf("%s %s v%d: metadata %+v", e.StreamID, e.Type, e.Version, md)
		}
	}
	if _, err := app.DecodeEvents(all); err != nil {
		t.Fatalf("the stored events do not decode: %v", err)
	}
	var missing []string
	for typ := range domain.EventTypes() {
		if seen[typ] == 0 {
			missing = append(missing, typ)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Fatalf("the drive emitted no %s: make it emit every event type, so each is checked against its schema", strings.Join(missing, ", "))
	}
	for typ := range seen {
		if _, known := domain.CurrentSchemaVersion(typ); !known {
			t.Errorf("the database holds %s, which the domain does not know", typ)
		}
	}
	t.Logf("%d events of %d types checked against their schemas: %v", len(all), len(seen), seen)
}
