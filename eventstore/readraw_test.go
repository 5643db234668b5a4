package eventstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// ReadLogOfTx takes its columns from the rows' raw values instead of
// scanning them: every field it fills must be what a scan gives, the
// recorded time down to its zone, for events of any schema version.
func TestReadLogOfRawEqualsScan(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	pool := testdb.Pool(t, "eventstore")
	kind := "rlr_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	stream := newStreamID("rlr")
	v2 := newEvent("B", `{"n": 2, "s": "é\"x"}`)
	v2.SchemaVersion = 2
	appendOrFatal(t, store, eventstore.Append{StreamID: stream, StreamType: kind,
		Events: []eventstore.NewEvent{newEvent("A", `{"n": 1}`), v2}})
	appendOrFatal(t, store, eventstore.Append{StreamID: stream, StreamType: kind, ExpectedVersion: 2,
		Events: []eventstore.NewEvent{newEvent("A", `{"n": 3, "a": [1, 2.50, null]}`)}})
	want, err := store.Load(ctx, stream, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []eventstore.Event
	var at eventstore.Cursor
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		batch, next, err := eventstore.ReadLogOfTx(ctx, pool, at, 2, kind)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			time.Sleep(20 * time.Millisecond) // an older open transaction elsewhere holds the horizon
			continue
		}
		got, at = append(got, batch...), next
	}
	if len(got) != len(want) {
		t.Fatalf("read %d events, want %d", len(got), len(want))
	}
	for i, e := range got {
		w := want[i]
		if e.ID != w.ID || e.StreamID != w.StreamID || e.StreamType != w.StreamType || e.Version != w.Version ||
			e.Position != w.Position || e.TransactionID != w.TransactionID || e.Type != w.Type ||
			e.SchemaVersion != w.SchemaVersion || string(e.Data) != string(w.Data) || e.RecordedAt != w.RecordedAt {
			t.Errorf("event %d: %+v\nwant %+v", i, e, w)
		}
	}
}
