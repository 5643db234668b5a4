package eventstore_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// logEntry is an event or a topic message: its place in the log's order.
type logEntry struct {
	id  string
	xid uint64
	pos int64
}

func (e logEntry) cursor() eventstore.Cursor {
	return eventstore.Cursor{TransactionID: e.xid, Position: e.pos}
}

func entries(t *testing.T, pool *pgxpool.Pool, sql string) []logEntry {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (logEntry, error) {
		var e logEntry
		return e, r.Scan(&e.id, &e.xid, &e.pos)
	})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func eventEntries(t *testing.T, pool *pgxpool.Pool) []logEntry {
	return entries(t, pool, `SELECT event_id::text, transaction_id, position FROM events ORDER BY transaction_id, position`)
}

func messageEntries(t *testing.T, pool *pgxpool.Pool) []logEntry {
	return entries(t, pool, `SELECT uuid, transaction_id, "offset" FROM watermill_upsell_events ORDER BY transaction_id, "offset"`)
}

// outOfOrder appends, through first, an event of a transaction that took
// its id before second's transaction, which commits first: first's event
// has the lower transaction id and the higher position.
func outOfOrder(t *testing.T, store *eventstore.Store, first, second eventstore.Append) {
	t.Helper()
	ctx := t.Context()
	tx, err := store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	appendOrFatal(t, store, second)
	if _, err := store.AppendTx(ctx, tx, first); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// publishOutOfOrder inserts two messages into the SQL topic as the
// relay's publisher does, the first's transaction taking its id first and
// committing last.
func publishOutOfOrder(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	const insert = `INSERT INTO watermill_upsell_events (uuid, payload, metadata, transaction_id) VALUES ($1, '{}', '{}', pg_current_xact_id())`
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, insert, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, insert, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// after returns the ids of the entries after c in their order.
func after(list []logEntry, c eventstore.Cursor) map[string]bool {
	m := map[string]bool{}
	for _, e := range list {
		if c.Less(e.cursor()) {
			m[e.id] = true
		}
	}
	return m
}

// readAll reads the whole log after c with ReadLog, waiting (with a
// deadline) until it has read every id in want.
func readAll(t *testing.T, store *eventstore.Store, c eventstore.Cursor, want ...uuid.UUID) []eventstore.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got []eventstore.Event
	for {
		batch, next, err := store.ReadLog(t.Context(), c, 1000)
		if err != nil {
			t.Fatal(err)
		}
		got, c = append(got, batch...), next
		if len(batch) > 0 {
			continue
		}
		missing := 0
		for _, id := range want {
			if !slices.ContainsFunc(got, func(e eventstore.Event) bool { return e.ID == id }) {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReadLog after %s: %d of %d new events still unread after 30 s", c, missing, len(want))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRebaselineAfterRestore(t *testing.T) {
	t.Parallel()
	pool := testdb.EmptyPool(t)
	store := eventstore.New(pool)
	ctx := t.Context()

	streams := []string{newStreamID("quote"), newStreamID("quote"), newStreamID("customer")}
	app := func(i int, typ string) eventstore.Append {
		return eventstore.Append{StreamID: streams[i], StreamType: "quote", ExpectedVersion: -1,
			Events: []eventstore.NewEvent{newEvent(typ, `{"n": 1}`)}}
	}
	for i := range 3 {
		appendOrFatal(t, store, app(i, "Opened"))
	}
	outOfOrder(t, store, app(0, "Late"), app(1, "Early"))
	appendOrFatal(t, store, app(2, "Between"))
	outOfOrder(t, store, app(1, "Late"), app(2, "Early"))
	appendOrFatal(t, store, eventstore.Append{StreamID: streams[0], StreamType: "quote", ExpectedVersion: -1,
		Events: []eventstore.NewEvent{newEvent("Two", `{}`), newEvent("Events", `{}`)}})
	publishOutOfOrder(t, pool)
	publishOutOfOrder(t, pool)

	old := eventEntries(t, pool)
	// The first out-of-order region: the late event (lower id, higher
	// position) is old[3], the early one old[4].
	if !(old[3].xid < old[4].xid && old[3].pos > old[4].pos) {
		t.Fatalf("no out-of-order commit where expected: %+v", old)
	}
	checkpoints := map[string]eventstore.Cursor{
		"at-start":          {},
		"after-first":       old[0].cursor(),
		"in-out-of-order":   old[3].cursor(), // read the late event, not the early one at a lower position
		"past-out-of-order": old[4].cursor(),
		"at-the-end":        old[len(old)-1].cursor(),
	}
	for name, c := range checkpoints {
		if _, err := pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, transaction_id, position) VALUES ($1, $2::xid8, $3)`,
			name, c.TransactionID, c.Position); err != nil {
			t.Fatal(err)
		}
	}
	oldMsgs := messageEntries(t, pool)
	if !(oldMsgs[0].xid < oldMsgs[1].xid && oldMsgs[0].pos > oldMsgs[1].pos) {
		t.Fatalf("no out-of-order publish where expected: %+v", oldMsgs)
	}
	groups := map[string]eventstore.Cursor{
		"group-start":  {},
		"group-middle": oldMsgs[0].cursor(), // the message at the lower offset is unread
		"group-end":    oldMsgs[len(oldMsgs)-1].cursor(),
	}
	for name, c := range groups {
		if _, err := pool.Exec(ctx, `INSERT INTO watermill_offsets_upsell_events (consumer_group, offset_acked, last_processed_transaction_id)
VALUES ($1, $2, $3::xid8)`, name, c.Position, c.TransactionID); err != nil {
			t.Fatal(err)
		}
	}

	// Before a restore nothing is ahead, and a rebaseline changes nothing.
	info, err := eventstore.Ahead(ctx, pool)
	if err != nil || info.Ahead() {
		t.Fatalf("before the restore: Ahead = %+v, %v", info, err)
	}
	digest := testdb.RebaselineDigest(t, pool)
	if r, err := eventstore.Rebaseline(ctx, pool, false); err != nil || r.Changed() {
		t.Fatalf("rebaseline before a restore: %+v, %v", r, err)
	}
	if testdb.RebaselineDigest(t, pool) != digest {
		t.Fatal("a rebaseline with nothing ahead changed the tables")
	}

	testdb.SimulateRestore(t, pool)
	shifted := eventEntries(t, pool)
	for i := range old {
		if shifted[i].id != old[i].id {
			t.Fatalf("the simulated restore changed the log's order at %d", i)
		}
		old[i] = shifted[i]
	}
	oldMsgs = messageEntries(t, pool)
	for name, c := range checkpoints {
		if c != (eventstore.Cursor{}) {
			c.TransactionID += 1 << 40
			checkpoints[name] = c
		}
	}
	for name, c := range groups {
		if c != (eventstore.Cursor{}) {
			c.TransactionID += 1 << 40
			groups[name] = c
		}
	}

	info, err = eventstore.Ahead(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Ahead() || info.Events < info.Next || info.Checkpoints < info.Next || info.Messages < info.Next || info.ConsumerGroups < info.Next {
		t.Fatalf("after the restore: Ahead = %+v", info)
	}
	t.Logf("detected: %s", info)

	// A dry run reports and changes nothing.
	digest = testdb.RebaselineDigest(t, pool)
	dry, err := eventstore.Rebaseline(ctx, pool, true)
	if err != nil {
		t.Fatal(err)
	}
	if !dry.Changed() || !dry.DryRun || dry.Events != int64(len(old)) || dry.Messages != int64(len(oldMsgs)) {
		t.Fatalf("dry run: %+v", dry)
	}
	if testdb.RebaselineDigest(t, pool) != digest {
		t.Fatal("the dry run changed the tables")
	}

	r, err := eventstore.Rebaseline(ctx, pool, false)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Changed() || r.Events != int64(len(old)) || r.Messages != int64(len(oldMsgs)) {
		t.Fatalf("rebaseline: %+v", r)
	}
	if !slices.Equal(r.Moves, dry.Moves) {
		t.Errorf("the dry run's moves %+v differ from the rebaseline's %+v", dry.Moves, r.Moves)
	}
	// Every place with a transaction id was moved, and only those.
	if want := 4 + 2; len(r.Moves) != want {
		t.Errorf("%d moves, want %d: %+v", len(r.Moves), want, r.Moves)
	}
	for _, m := range r.Moves {
		t.Logf("%s %s: %s -> %s", m.Kind, m.Name, m.Before, m.After)
	}

	if info, err := eventstore.Ahead(ctx, pool); err != nil || info.Ahead() {
		t.Fatalf("after the rebaseline: Ahead = %+v, %v", info, err)
	}
	digest = testdb.RebaselineDigest(t, pool)
	if again, err := eventstore.Rebaseline(ctx, pool, false); err != nil || again.Changed() {
		t.Fatalf("second rebaseline: %+v, %v", again, err)
	}
	if testdb.RebaselineDigest(t, pool) != digest {
		t.Fatal("a second rebaseline changed the tables")
	}
	if stats, err := eventstore.VerifyAll(ctx, pool, nil); err != nil || stats.Events != int64(len(old)) {
		t.Fatalf("the hash chains after the rebaseline: %+v, %v", stats, err)
	}

	// New appends, to a restored stream and a new one, come after every
	// restored event and are read after every rebaselined checkpoint.
	fresh := appendOrFatal(t, store, app(1, "AfterRestore"))
	fresh = append(fresh, appendOrFatal(t, store, eventstore.Append{StreamID: newStreamID("quote"), StreamType: "quote",
		Events: []eventstore.NewEvent{newEvent("New", `{}`)}})...)
	freshIDs := []uuid.UUID{fresh[0].ID, fresh[1].ID}
	for name, before := range checkpoints {
		var now eventstore.Cursor
		if err := pool.QueryRow(ctx, `SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1`,
			name).Scan(&now.TransactionID, &now.Position); err != nil {
			t.Fatal(err)
		}
		if before == (eventstore.Cursor{}) {
			if now != before {
				t.Errorf("%s: the checkpoint at the start moved to %s", name, now)
			}
		} else if now.TransactionID != eventstore.BaselineTransactionID {
			t.Errorf("%s: rebaselined to %s", name, now)
		}
		read := readAll(t, store, now, freshIDs...)
		got := map[string]bool{}
		for _, e := range read {
			got[e.ID.String()] = true
		}
		unread := after(old, before)
		for id := range unread {
			if !got[id] {
				t.Errorf("%s: moved from %s to %s, it skips event %s that it had not read", name, before, now, id)
			}
		}
		surplus := 0
		for _, e := range read {
			if !unread[e.ID.String()] && !slices.Contains(freshIDs, e.ID) {
				surplus++
				if !slices.ContainsFunc(old, func(o logEntry) bool { return o.id == e.ID.String() && !before.Less(o.cursor()) }) {
					t.Errorf("%s: re-reads event %s, which it had not read", name, e.ID)
				}
			}
		}
		n := len(read)
		if n < 2 || read[n-2].ID != fresh[0].ID || read[n-1].ID != fresh[1].ID {
			t.Errorf("%s: the new events are not read last, in order", name)
		}
		t.Logf("%s: %s -> %s: %d unread, %d read again", name, before, now, len(unread), surplus)
	}

	// The topic: every consumer group still reads every message it had not
	// read, and re-reads only messages it had read.
	msgs := messageEntries(t, pool)
	for name, before := range groups {
		var now eventstore.Cursor
		if err := pool.QueryRow(ctx, `SELECT last_processed_transaction_id, offset_acked FROM watermill_offsets_upsell_events WHERE consumer_group = $1`,
			name).Scan(&now.TransactionID, &now.Position); err != nil {
			t.Fatal(err)
		}
		if before == (eventstore.Cursor{}) && now != before {
			t.Errorf("%s: the group at the start moved to %s", name, now)
		}
		next := after(msgs, now)
		unread := after(oldMsgs, before)
		for id := range unread {
			if !next[id] {
				t.Errorf("group %s: moved from %s to %s, it skips message %s", name, before, now, id)
			}
		}
		for id := range next {
			if !unread[id] && !slices.ContainsFunc(oldMsgs, func(o logEntry) bool { return o.id == id && !before.Less(o.cursor()) }) {
				t.Errorf("group %s: re-reads message %s, which it had not read", name, id)
			}
		}
		t.Logf("group %s: %s -> %s: %d unread, %d to read", name, before, now, len(unread), len(next))
	}
}

// The hash chain does not cover the transaction id (nor the position), so
// rebaselining leaves every chain valid.
func TestHashIgnoresTransactionID(t *testing.T) {
	e := eventstore.Event{ID: uuid.New(), StreamID: "s", StreamType: "quote", Version: 1, Type: "T", SchemaVersion: 1,
		RecordedAt: time.Now(), Data: []byte(`{}`), RawMetadata: []byte(`{}`), TransactionID: 123, Position: 7}
	moved := e
	moved.TransactionID, moved.Position = eventstore.BaselineTransactionID, 9
	if fmt.Sprintf("%x", eventstore.EventHash(nil, e)) != fmt.Sprintf("%x", eventstore.EventHash(nil, moved)) {
		t.Fatal("the event hash depends on the transaction id or position: a rebaseline would break the chains")
	}
}
