package eventstore_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

func TestLoadUpTo(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	stream := newStreamID("quote")
	first := appendOrFatal(t, store, eventstore.Append{StreamID: stream, StreamType: "quote", Events: []eventstore.NewEvent{
		newEvent("ChangeQuoteOpened", `{}`), newEvent("ProductAdded", `{}`),
	}})
	// recorded_at is the transaction's start, in microseconds: make sure the
	// second append starts later.
	time.Sleep(5 * time.Millisecond)
	appendOrFatal(t, store, eventstore.Append{StreamID: stream, StreamType: "quote", ExpectedVersion: 2, Events: []eventstore.NewEvent{
		newEvent("SeatsChanged", `{}`),
	}})

	tests := []struct {
		name        string
		opts        eventstore.LoadOptions
		wantVersion int64 // of the last event loaded
	}{
		{"everything", eventstore.LoadOptions{}, 3},
		{"up to version 1", eventstore.LoadOptions{UpToVersion: 1}, 1},
		{"up to a version beyond the stream", eventstore.LoadOptions{UpToVersion: 9}, 3},
		{"up to the first append's time", eventstore.LoadOptions{UpTo: first[0].RecordedAt}, 2},
		{"up to before the first append", eventstore.LoadOptions{UpTo: first[0].RecordedAt.Add(-time.Microsecond)}, 0},
		{"up to version and time, version first", eventstore.LoadOptions{UpToVersion: 1, UpTo: time.Now().Add(time.Hour)}, 1},
		{"up to version and time, time first", eventstore.LoadOptions{UpToVersion: 3, UpTo: first[0].RecordedAt}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			events, err := store.Load(ctx, stream, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(events)) != tt.wantVersion {
				t.Fatalf("%d events, want %d", len(events), tt.wantVersion)
			}
			for i, e := range events {
				if e.Version != int64(i+1) {
					t.Errorf("event %d has version %d", i, e.Version)
				}
			}
		})
	}

	if _, err := store.Load(ctx, stream, eventstore.LoadOptions{UpToVersion: -1}); err == nil {
		t.Error("Load up to version -1: no error")
	}
}

// TestReadLogOutOfOrderCommits is why the cursor holds a transaction id:
// A takes a position first, B takes a later one and commits first.
func TestReadLogOutOfOrderCommits(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	pool := store.Pool()
	reader, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	streamA, streamB := newStreamID("quote"), newStreamID("quote")

	txA, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback(ctx)
	a, err := store.AppendTx(ctx, txA, eventstore.Append{StreamID: streamA, StreamType: "quote",
		Events: []eventstore.NewEvent{newEvent("ChangeQuoteOpened", `{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	b := appendOrFatal(t, store, eventstore.Append{StreamID: streamB, StreamType: "quote",
		Events: []eventstore.NewEvent{newEvent("ChangeQuoteOpened", `{}`)}})
	if a[0].Position >= b[0].Position || a[0].TransactionID >= b[0].TransactionID {
		t.Fatalf("A at %v, B at %v: want A before B in both position and transaction id", cursorOf(a[0]), cursorOf(b[0]))
	}

	// B has committed, but A is open and below it: the log stops before A.
	for {
		events, next, err := store.ReadLog(ctx, reader, 100)
		if err != nil {
			t.Fatal(err)
		}
		if indexOf(events, b[0].ID) >= 0 || indexOf(events, a[0].ID) >= 0 {
			t.Fatal("ReadLog returned an event of or after a transaction still open")
		}
		if len(events) == 0 {
			break
		}
		reader = next
	}

	// A reader that follows position alone sees B now, so it moves past A's
	// position and never comes back for it.
	naiveSeen := naiveRead(t, store, a[0].Position-1)
	if indexOf(naiveSeen, b[0].ID) < 0 || indexOf(naiveSeen, a[0].ID) >= 0 {
		t.Fatalf("by position, before A commits: read %d events, want B's and not A's", len(naiveSeen))
	}
	naiveLast := naiveSeen[len(naiveSeen)-1].Position

	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if indexOf(naiveRead(t, store, naiveLast), a[0].ID) >= 0 {
		t.Fatal("by position, after A commits: A read, but it is behind the position reader")
	}

	// The cursor reader gets both, A first.
	read := follow(t, store, &reader, 100, a[0].ID, b[0].ID)
	if ia, ib := indexOf(read, a[0].ID), indexOf(read, b[0].ID); ia > ib {
		t.Errorf("the log gives A at %d, B at %d: want A first", ia, ib)
	}
}

// naiveRead reads the log as a reader keyed by position alone would, and
// returns what it reads, in position order.
func naiveRead(t *testing.T, store *eventstore.Store, afterPosition int64) []eventstore.Event {
	t.Helper()
	rows, err := store.Pool().Query(t.Context(), `SELECT event_id, position FROM events WHERE position > $1 ORDER BY position`, afterPosition)
	if err != nil {
		t.Fatal(err)
	}
	var events []eventstore.Event
	var e eventstore.Event
	for rows.Next() {
		if err := rows.Scan(&e.ID, &e.Position); err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return events
}

// TestReadLogBatches follows a log of interleaved transactions in batches
// smaller than the log, and reads each event once.
func TestReadLogBatches(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	reader, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var want []uuid.UUID
	for i := range 8 {
		var appends []eventstore.Append
		for s := range 1 + i%3 {
			appends = append(appends, eventstore.Append{StreamID: newStreamID("quote"), StreamType: "quote", Events: []eventstore.NewEvent{
				newEvent("ChangeQuoteOpened", fmt.Sprintf(`{"append":%d,"stream":%d}`, i, s)), newEvent("ProductAdded", `{}`),
			}})
		}
		events, err := store.Append(ctx, appends...)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			want = append(want, e.ID)
		}
	}

	read := follow(t, store, &reader, 7, want...)
	seen := map[uuid.UUID]bool{}
	for _, e := range read {
		if seen[e.ID] {
			t.Errorf("event %s read twice", e.ID)
		}
		seen[e.ID] = true
	}
	// follow has checked the order; this checks ours come in append order.
	last := -1
	for _, id := range want {
		i := indexOf(read, id)
		if i <= last {
			t.Fatalf("event %s read at %d, after an event appended later", id, i)
		}
		last = i
	}
}

func TestReadLogLimit(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	for _, limit := range []int{0, -1} {
		if _, c, err := store.ReadLog(ctx, eventstore.Cursor{TransactionID: 7, Position: 3}, limit); err == nil || c.Position != 3 {
			t.Errorf("limit %d: cursor %v, err %v; want the input cursor and an error", limit, c, err)
		}
	}
}

func TestCursorString(t *testing.T) {
	t.Parallel()
	for _, c := range []eventstore.Cursor{{}, {TransactionID: 1<<63 + 5, Position: 1<<62 + 1}, {TransactionID: 740, Position: 12}} {
		got, err := eventstore.ParseCursor(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCursor(%q) = %v, %v", c.String(), got, err)
		}
	}
	for _, bad := range []string{"", "12", "a:1", "1:b", "-1:1", "1:-1", "1:2:3", " 1:2"} {
		if c, err := eventstore.ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) = %v, want an error", bad, c)
		}
	}
}

// ReadLogOfTx reads the events of one stream type in log order, without
// the columns a rebuild does not need, and refuses a stream type that could
// not be written into its statement as it is.
func TestReadLogOf(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	pool := testdb.Pool(t, "eventstore")
	kind := "rlo_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	mine := appendOrFatal(t, store, eventstore.Append{StreamID: newStreamID("rlo"), StreamType: kind,
		Events: []eventstore.NewEvent{newEvent("A", `{"n": 1}`), newEvent("B", `{"n": 2}`)}})
	appendOrFatal(t, store, eventstore.Append{StreamID: newStreamID("rlo-other"), StreamType: kind + "x",
		Events: []eventstore.NewEvent{newEvent("C", `{"n": 3}`)}})
	var got []eventstore.Event
	var at eventstore.Cursor
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(mine) && time.Now().Before(deadline) {
		batch, next, err := eventstore.ReadLogOfTx(ctx, pool, at, 1, kind)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			time.Sleep(20 * time.Millisecond) // an older open transaction elsewhere holds the horizon
			continue
		}
		got, at = append(got, batch...), next
	}
	if len(got) != len(mine) {
		t.Fatalf("read %d events of type %s, want %d", len(got), kind, len(mine))
	}
	for i, e := range got {
		w := mine[i]
		if e.ID != w.ID || e.StreamID != w.StreamID || e.StreamType != kind || e.Version != w.Version || e.Type != w.Type ||
			!sameJSON(t, e.Data, w.Data) || !e.RecordedAt.Equal(w.RecordedAt) || cursorOf(e) != cursorOf(w) {
			t.Errorf("event %d: %+v, want %+v", i, e, w)
		}
		if e.Hash != nil || e.RawMetadata != nil {
			t.Errorf("event %d carries the hash or metadata, which the read leaves out", i)
		}
	}
	if more, _, err := eventstore.ReadLogOfTx(ctx, pool, at, 10, kind); err != nil || len(more) != 0 {
		t.Errorf("after the last event of the type: %d events, %v", len(more), err)
	}
	for _, bad := range []string{"", "Customer", "customer' OR 'x' = 'x", "a b", strings.Repeat("a", 64)} {
		if _, c, err := eventstore.ReadLogOfTx(ctx, pool, at, 10, bad); err == nil || c != at {
			t.Errorf("stream type %q: cursor %v, err %v; want the cursor unchanged and an error", bad, c, err)
		}
	}
}
