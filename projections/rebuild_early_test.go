package projections_test

import (
	"encoding/json"
	"testing"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/projections"
)

// A rebuild makes a closed quote's row as soon as its fold closes it, and
// lets the aggregate go. The domain appends nothing to a closed quote, but
// the log is the truth: an event after the close (appended here by hand)
// makes the rebuild replay the quote's history, and its row is that of the
// whole stream, as the live projection's would be.
func TestRebuildQuoteEventAfterClose(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	ctx := t.Context()
	importFixture(t, pool)
	customers := someCustomers(t, pool, "cust-reopen", 2, false)
	svc := newApp(pool)
	reopened := submitted(t, svc, customers[0], 700)
	closed := submitted(t, svc, customers[1], 710)

	store := eventstore.New(pool)
	history, err := store.Load(ctx, reopened.QuoteID.String(), eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var seats *eventstore.Event
	for i := range history {
		if history[i].Type == "SeatsChanged" {
			seats = &history[i]
		}
	}
	if seats == nil {
		t.Fatalf("no SeatsChanged in %d events", len(history))
	}
	var change domain.SeatsChanged
	if err := json.Unmarshal(seats.Data, &change); err != nil {
		t.Fatal(err)
	}
	change.PreviousSeats, change.NewSeats = change.NewSeats, 750
	data, err := json.Marshal(change)
	if err != nil {
		t.Fatal(err)
	}
	last := history[len(history)-1]
	if _, err := store.Append(ctx, eventstore.Append{StreamID: last.StreamID, StreamType: last.StreamType,
		ExpectedVersion: last.Version, Events: []eventstore.NewEvent{{Type: seats.Type, Data: data, Metadata: last.Metadata}}}); err != nil {
		t.Fatal(err)
	}

	quotes, err := projections.ByName("quotes")
	if err != nil {
		t.Fatal(err)
	}
	if err := projections.Rebuild(ctx, pool, quotes, func(int64, int64) {}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		q       string
		version int64
	}{{reopened.QuoteID.String(), last.Version + 1}, {closed.QuoteID.String(), closed.Version}} {
		var version int64
		var preview []byte
		if err := pool.QueryRow(ctx, `SELECT version, preview FROM quote_views WHERE quote_id = $1`, want.q).Scan(&version, &preview); err != nil {
			t.Fatal(err)
		}
		if version != want.version {
			t.Errorf("quote %s: row at version %d, want %d", want.q, version, want.version)
		}
		if !json.Valid(preview) {
			t.Fatalf("quote %s: preview %s", want.q, preview)
		}
	}
	wantQuoteView(t, pool, svc, alex, reopened.QuoteID)
	wantQuoteView(t, pool, svc, alex, closed.QuoteID)
}
