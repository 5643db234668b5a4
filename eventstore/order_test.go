package eventstore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/upsell-dev/upsell/eventstore"
)

// A transaction gets its id at its first write. T2 writes first (to another
// stream), then T1 appends version 1 of s and commits, then T2 appends
// version 2 of s. Accepting that would put version 2 (T2's smaller id)
// before version 1 in the log; the store refuses it as a version conflict,
// and the same append in a new transaction lands after version 1.
func TestAppendTxKeepsLogOrderPerStream(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	s, other := newStreamID("quote"), newStreamID("idempotency")
	ev := func() []eventstore.NewEvent { return []eventstore.NewEvent{newEvent("SeatsChanged", `{}`)} }

	t2, err := store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer t2.Rollback(ctx)
	if _, err := store.AppendTx(ctx, t2, eventstore.Append{StreamID: other, StreamType: "x", ExpectedVersion: eventstore.NoStream, Events: ev()}); err != nil {
		t.Fatal(err)
	}
	v1 := appendOrFatal(t, store, eventstore.Append{StreamID: s, StreamType: "quote", ExpectedVersion: eventstore.NoStream, Events: ev()})

	_, err = store.AppendTx(ctx, t2, eventstore.Append{StreamID: s, StreamType: "quote", ExpectedVersion: 1, Events: ev()})
	var conflict *eventstore.VersionConflictError
	if !errors.Is(err, eventstore.ErrVersionConflict) || !errors.As(err, &conflict) {
		t.Fatalf("append after an earlier write: err = %v, want a version conflict", err)
	}
	if conflict.Actual != 1 || !strings.Contains(err.Error(), "new transaction") {
		t.Errorf("conflict = %+v, %q: want actual 1 and advice to retry", conflict, err)
	}
	if err := t2.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	v2 := appendOrFatal(t, store, eventstore.Append{StreamID: s, StreamType: "quote", ExpectedVersion: 1, Events: ev()})
	if v2[0].TransactionID <= v1[0].TransactionID {
		t.Fatalf("version 2 has transaction id %d, not above version 1's %d", v2[0].TransactionID, v1[0].TransactionID)
	}
	// Any stream read back from the log comes in version order. Other
	// tests' transactions can hold the log's horizon back, so follow polls.
	var got []int64
	cursor := eventstore.Cursor{TransactionID: v1[0].TransactionID - 1}
	for _, e := range follow(t, store, &cursor, 100, v1[0].ID, v2[0].ID) {
		if e.StreamID == s {
			got = append(got, e.Version)
		}
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("the log gives stream versions %v, want [1 2]", got)
	}
}
