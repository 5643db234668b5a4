package eventstore_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// The tests of this package share one database and run in parallel: each
// uses streams of its own, and log readers look only for their own events.

func setup(t *testing.T) (*eventstore.Store, context.Context) {
	t.Helper()
	return eventstore.New(testdb.Pool(t, "eventstore")), t.Context()
}

func newStreamID(kind string) string {
	return kind + "-" + uuid.NewString()
}

func newEvent(typ, data string) eventstore.NewEvent {
	return eventstore.NewEvent{Type: typ, Data: json.RawMessage(data)}
}

func appendOrFatal(t *testing.T, store *eventstore.Store, a eventstore.Append) []eventstore.Event {
	t.Helper()
	events, err := store.Append(t.Context(), a)
	if err != nil {
		t.Fatalf("append to %s: %v", a.StreamID, err)
	}
	return events
}

func wantVersion(t *testing.T, store *eventstore.Store, streamID string, want int64) {
	t.Helper()
	got, err := store.StreamVersion(t.Context(), streamID)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("stream %s is at version %d, want %d", streamID, got, want)
	}
}

// sameJSON compares by value: jsonb reorders keys and respaces.
func sameJSON(t *testing.T, got, want []byte) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

func cursorOf(e eventstore.Event) eventstore.Cursor {
	return eventstore.Cursor{TransactionID: e.TransactionID, Position: e.Position}
}

func before(a, b eventstore.Cursor) bool {
	return a.TransactionID < b.TransactionID || a.TransactionID == b.TransactionID && a.Position < b.Position
}

// follow reads the log from *cur in batches of limit until every event in
// want has been read, and returns everything it read. Transactions of other
// tests, here and on the rest of the server, can hold the snapshot's xmin
// back for a while, hence the polling.
func follow(t *testing.T, store *eventstore.Store, cur *eventstore.Cursor, limit int, want ...uuid.UUID) []eventstore.Event {
	t.Helper()
	missing := map[uuid.UUID]bool{}
	for _, id := range want {
		missing[id] = true
	}
	var read []eventstore.Event
	deadline := time.Now().Add(10 * time.Second)
	for len(missing) > 0 {
		events, next, err := store.ReadLog(t.Context(), *cur, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) > limit {
			t.Fatalf("ReadLog returned %d events, limit %d", len(events), limit)
		}
		for _, e := range events {
			if !before(*cur, cursorOf(e)) {
				t.Fatalf("event at %v read after cursor %v: out of commit order", cursorOf(e), *cur)
			}
			*cur = cursorOf(e)
			delete(missing, e.ID)
		}
		if *cur != next {
			t.Fatalf("ReadLog returned cursor %v, its last event is at %v", next, *cur)
		}
		read = append(read, events...)
		if len(events) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d events still unread after 10 s", len(missing))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return read
}

// indexOf returns where the event with id is in events, -1 if absent.
func indexOf(events []eventstore.Event, id uuid.UUID) int {
	for i, e := range events {
		if e.ID == id {
			return i
		}
	}
	return -1
}
