package audit_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/audit"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

func newEvents(t *testing.T, events ...domain.Event) []eventstore.NewEvent {
	t.Helper()
	out := make([]eventstore.NewEvent, len(events))
	for i, e := range events {
		typ, schema, data, err := domain.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = eventstore.NewEvent{Type: typ, SchemaVersion: schema, Data: data, Metadata: eventstore.Metadata{MSPID: "msp-1", UserID: "u1"}}
	}
	return out
}

func TestLoad(t *testing.T) {
	t.Parallel()
	pool := testdb.Pool(t, "audit")
	store := eventstore.New(pool)
	ctx := t.Context()

	quote := uuid.New()
	opened := domain.ChangeQuoteOpened{QuoteID: quote, CustomerID: "c1", CustomerName: "C One", MSPID: "msp-1", MSPName: "M", Currency: "EUR",
		BaselineVersion: 1, OpenedBy: "u1", OpenedAt: at, Baseline: []domain.Line{line("P", "Product P", 10, "2.00")}}
	if _, err := store.Append(ctx, eventstore.Append{StreamID: quote.String(), StreamType: domain.StreamChangeQuote, Events: newEvents(t,
		opened, domain.SeatsChanged{ProductCode: "P", TermType: "12 Month", PriorSeats: 10, PreviousSeats: 10, NewSeats: 12, UnitPrice: domain.MustMoney("1.90")})}); err != nil {
		t.Fatal(err)
	}
	// An event this version of the code does not know, as a newer one may
	// have written.
	if _, err := store.Append(ctx, eventstore.Append{StreamID: quote.String(), StreamType: domain.StreamChangeQuote, ExpectedVersion: 2,
		Events: []eventstore.NewEvent{{Type: "QuoteArchived", Data: json.RawMessage(`{}`)}}}); err != nil {
		t.Fatal(err)
	}

	h, err := audit.Load(ctx, pool, quote, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 3 || len(h.Entries) != 3 || h.Chain != nil || h.Verified != 3 || h.State != nil || h.Opened == nil || h.Opened.CustomerName != "C One" {
		t.Fatalf("Load = %+v", h)
	}
	if got := h.Entries[2].Change; got != "QuoteArchived" {
		t.Errorf("an unknown event's words: %q, want its type", got)
	}
	var out bytes.Buffer
	if err := audit.WriteText(&out, h); err != nil || !strings.Contains(out.String(), "Seats of Product P (12 Month): 10 → 12 at 1.90 EUR a seat") {
		t.Errorf("WriteText: %v\n%s", err, out.String())
	}

	// The state up to version 2 rebuilds; with the unknown event it cannot.
	h, err = audit.Load(ctx, pool, quote, &audit.AsOf{Version: 2})
	if err != nil || h.State == nil || h.State.Preview().NewMonthlyTotal.String() != "22.80" {
		t.Errorf("Load as of version 2 = %+v, %v", h, err)
	}
	if _, err := audit.Load(ctx, pool, quote, &audit.AsOf{Version: 3}); err == nil || !strings.Contains(err.Error(), `"QuoteArchived"`) {
		t.Errorf("Load as of version 3: %v, want the unknown event named", err)
	}

	// A stream of another type with a UUID for an id is no quote.
	other := uuid.New()
	if _, err := store.Append(ctx, eventstore.Append{StreamID: other.String(), StreamType: domain.StreamCustomer,
		Events: []eventstore.NewEvent{{Type: "CustomerOnboarded", Data: json.RawMessage(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uuid.UUID{other, uuid.New()} {
		_, err := audit.Load(ctx, pool, id, nil)
		var nf *audit.NotFoundError
		if !errors.Is(err, audit.ErrNotFound) || !errors.As(err, &nf) || nf.QuoteID != id {
			t.Errorf("Load(%s) = %v, want not found", id, err)
		}
	}
	if _, err := audit.VerifyQuote(ctx, pool, uuid.New()); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("VerifyQuote of an unknown quote: %v", err)
	}
	if stats, err := audit.VerifyQuote(ctx, pool, quote); err != nil || stats.Events != 3 {
		t.Errorf("VerifyQuote = %+v, %v", stats, err)
	}
}
