package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// panicTB lets an example, which has no *testing.T, use testdb.
type panicTB struct{ testing.TB }

func (panicTB) Helper()                           {}
func (panicTB) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (panicTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func Example() {
	ctx := context.Background()
	store := eventstore.New(testdb.Pool(panicTB{}, "eventstore"))
	quote := "quote-" + uuid.NewString()

	_, err := store.Append(ctx, eventstore.Append{
		StreamID:        quote,
		StreamType:      "quote",
		ExpectedVersion: eventstore.NoStream,
		Events: []eventstore.NewEvent{
			{Type: "ChangeQuoteOpened", Data: json.RawMessage(`{"customer_id":"c-1"}`)},
			{Type: "SeatsChanged", Data: json.RawMessage(`{"product":"backup","prior":682,"new":700}`)},
		},
	})
	if err != nil {
		panic(err)
	}

	// A second writer that decided on the quote before it existed loses.
	_, err = store.Append(ctx, eventstore.Append{
		StreamID:        quote,
		StreamType:      "quote",
		ExpectedVersion: eventstore.NoStream,
		Events:          []eventstore.NewEvent{{Type: "ChangeQuoteOpened", Data: json.RawMessage(`{"customer_id":"c-1"}`)}},
	})
	var conflict *eventstore.VersionConflictError
	if errors.As(err, &conflict) {
		fmt.Printf("conflict: expected %d, stream at %d\n", conflict.Expected, conflict.Actual)
	}

	events, err := store.Load(ctx, quote, eventstore.LoadOptions{})
	if err != nil {
		panic(err)
	}
	for _, e := range events {
		fmt.Println(e.Version, e.Type, string(e.Data))
	}
	// Output:
	// conflict: expected 0, stream at 2
	// 1 ChangeQuoteOpened {"customer_id": "c-1"}
	// 2 SeatsChanged {"new": 700, "prior": 682, "product": "backup"}
}
