package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
)

// groupsSeen records what eventstore.OnGroup tells.
type groupsSeen struct {
	mu   sync.Mutex
	seen []string // "members" or "members refused"
}

func (g *groupsSeen) observe(members int, refused bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := fmt.Sprint(members)
	if refused {
		s += " refused"
	}
	g.seen = append(g.seen, s)
}

// grouped is how many transactions carried two calls or more.
func (g *groupsSeen) grouped() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, s := range g.seen {
		if s != "1" {
			n++
		}
	}
	return n
}

func (g *groupsSeen) has(t *testing.T, want string) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.seen {
		if s == want {
			return
		}
	}
	t.Errorf("OnGroup told %q, want %q among them", g.seen, want)
}

// groupStore is a store that groups AppendCommit calls, inFlight groups in
// flight at a time, on the probe table's database, and what it told of
// the transactions it sent.
func groupStore(t *testing.T, inFlight int) (*eventstore.Store, *pgxpool.Pool, *groupsSeen) {
	t.Helper()
	_, pool := probeTable(t)
	seen := &groupsSeen{}
	return eventstore.New(pool, eventstore.WithGroupCommit(inFlight, 16), eventstore.OnGroup(seen.observe)), pool, seen
}

// blocker holds a transaction-level advisory lock in a transaction of its
// own: a commit whose statements take the lock waits until release, and
// holds the store's only group slot meanwhile.
type blocker struct {
	key int64
	tx  pgx.Tx
}

func block(t *testing.T, pool *pgxpool.Pool) *blocker {
	t.Helper()
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b := &blocker{key: rand.Int64N(1 << 62), tx: tx}
	if _, err := tx.Exec(t.Context(), `SELECT pg_advisory_xact_lock($1)`, b.key); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return b
}

func (b *blocker) release(t *testing.T) {
	t.Helper()
	if err := b.tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// waited waits until a session waits for the lock: the call that queued
// waits holds the store's slot.
func (b *blocker) waited(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting bool
		if err := pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'
    AND NOT granted AND (classid::bigint << 32 | objid::bigint) = $1 AND objsubid = 1)`, b.key).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing waits for the advisory lock after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waits queues the statement that waits for the lock.
func (b *blocker) waits(batch *pgx.Batch) {
	batch.Queue(`SELECT pg_advisory_xact_lock($1)`, b.key)
}

type outcome struct {
	events []eventstore.Event
	err    error
}

// commitAsync runs AppendCommit of one event on stream at version expected,
// with the probe row and then extra's statements, on its own goroutine.
func commitAsync(ctx context.Context, store *eventstore.Store, stream string, expected int64, extra func(*pgx.Batch)) <-chan outcome {
	out := make(chan outcome, 1)
	go func() {
		events, err := store.AppendCommit(ctx, func(b *pgx.Batch, events []eventstore.Event) error {
			if extra != nil {
				extra(b)
			}
			return probe(b, events)
		}, eventstore.Append{StreamID: stream, StreamType: "test", ExpectedVersion: expected,
			Events: []eventstore.NewEvent{newEvent("Changed", fmt.Sprintf(`{"v":%d}`, expected+1))}})
		out <- outcome{events, err}
	}()
	return out
}

// waitQueued waits until n calls wait for a group.
func waitQueued(t *testing.T, store *eventstore.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for eventstore.QueuedCommits(store) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued after 10s, want %d", eventstore.QueuedCommits(store), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func get(t *testing.T, c <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-c:
		return o
	case <-time.After(20 * time.Second):
		t.Fatal("AppendCommit did not return within 20s")
		return outcome{}
	}
}

// Calls made while another is in flight wait, then share one transaction:
// each gets its own events, and what each queued commits with them.
func TestGroupCommitShares(t *testing.T) {
	t.Parallel()
	store, pool, seen := groupStore(t, 1)
	ctx := t.Context()
	lock := block(t, pool)
	first := commitAsync(ctx, store, newStreamID("group-first"), 0, lock.waits)
	lock.waited(t, pool)
	streams := make([]string, 5)
	outs := make([]<-chan outcome, len(streams))
	for i := range streams {
		streams[i] = newStreamID("group")
		outs[i] = commitAsync(ctx, store, streams[i], 0, nil)
	}
	waitQueued(t, store, len(streams))
	lock.release(t)
	f := get(t, first)
	if f.err != nil {
		t.Fatal(f.err)
	}
	var xid uint64
	for i, out := range outs {
		o := get(t, out)
		if o.err != nil {
			t.Fatalf("%s: %v", streams[i], o.err)
		}
		if len(o.events) != 1 || o.events[0].StreamID != streams[i] || o.events[0].Version != 1 || o.events[0].Position == 0 {
			t.Fatalf("%s: got %+v, want its one event at version 1", streams[i], o.events)
		}
		if i == 0 {
			xid = o.events[0].TransactionID
		}
		if got := o.events[0].TransactionID; got != xid || got == f.events[0].TransactionID {
			t.Errorf("%s: transaction %d, want the group's %d (the first call's was %d)", streams[i], got, xid, f.events[0].TransactionID)
		}
		wantVersion(t, store, streams[i], 1)
		if v, ok := probeRow(t, pool, streams[i]); !ok || v != 1 {
			t.Errorf("%s: probe row version %d (found %v), want 1", streams[i], v, ok)
		}
		if _, err := eventstore.VerifyStream(ctx, pool, streams[i]); err != nil {
			t.Errorf("%s: %v", streams[i], err)
		}
	}
	if n := seen.grouped(); n != 1 {
		t.Errorf("%d groups sent, want 1", n)
	}
	seen.has(t, "1") // the first call, alone
	seen.has(t, "5")
}

// A member PostgreSQL refuses (a stale version, a failing statement) makes
// its group run alone: the refused member gets the error it would get
// alone, with nothing of it recorded, and the others commit.
func TestGroupCommitRefusedMemberRunsAlone(t *testing.T) {
	t.Parallel()
	store, pool, seen := groupStore(t, 1)
	ctx := t.Context()
	stale, failing := newStreamID("group-stale"), newStreamID("group-failing")
	appendOrFatal(t, store, eventstore.Append{StreamID: stale, StreamType: "test", ExpectedVersion: 0,
		Events: []eventstore.NewEvent{newEvent("Opened", `{}`), newEvent("Changed", `{}`)}})
	lock := block(t, pool)
	first := commitAsync(ctx, store, newStreamID("group-first"), 0, lock.waits)
	lock.waited(t, pool)
	good := []string{newStreamID("group-good"), newStreamID("group-good")}
	goodOut := []<-chan outcome{commitAsync(ctx, store, good[0], 0, nil)}
	staleOut := commitAsync(ctx, store, stale, 1, nil) // the stream is at 2
	failingOut := commitAsync(ctx, store, failing, 0, func(b *pgx.Batch) { b.Queue(`SELECT 1 / 0`) })
	goodOut = append(goodOut, commitAsync(ctx, store, good[1], 0, nil))
	waitQueued(t, store, 4)
	lock.release(t)
	if o := get(t, first); o.err != nil {
		t.Fatal(o.err)
	}
	for i, out := range goodOut {
		if o := get(t, out); o.err != nil || len(o.events) != 1 || o.events[0].Version != 1 {
			t.Errorf("%s: %+v, %v; want its event at version 1", good[i], o.events, o.err)
		}
		wantVersion(t, store, good[i], 1)
		if _, ok := probeRow(t, pool, good[i]); !ok {
			t.Errorf("%s: no probe row", good[i])
		}
	}
	o := get(t, staleOut)
	var conflict *eventstore.VersionConflictError
	if !errors.As(o.err, &conflict) || conflict.Expected != 1 || conflict.Actual != 2 {
		t.Errorf("stale member: %v, want a version conflict expecting 1, actual 2", o.err)
	}
	wantVersion(t, store, stale, 2)
	if _, ok := probeRow(t, pool, stale); ok {
		t.Error("the stale member's probe row was recorded")
	}
	o = get(t, failingOut)
	var pgErr *pgconn.PgError
	if !errors.As(o.err, &pgErr) || pgErr.Code != "22012" {
		t.Errorf("failing member: %v, want division by zero (22012)", o.err)
	}
	wantVersion(t, store, failing, 0)
	if n := seen.grouped(); n != 1 {
		t.Errorf("%d groups sent, want 1 (the refused one)", n)
	}
	seen.has(t, "4 refused")
}

// Two calls on one stream never share a group: the second would check the
// head the first has not yet moved. Waiting together, one commits and the
// other meets the conflict it would meet alone.
func TestGroupCommitOneStreamPerGroup(t *testing.T) {
	t.Parallel()
	store, pool, seen := groupStore(t, 1)
	ctx := t.Context()
	stream := newStreamID("group-same")
	lock := block(t, pool)
	first := commitAsync(ctx, store, newStreamID("group-first"), 0, lock.waits)
	lock.waited(t, pool)
	a := commitAsync(ctx, store, stream, 0, nil)
	waitQueued(t, store, 1) // a waits first, then b
	b := commitAsync(ctx, store, stream, 0, nil)
	waitQueued(t, store, 2)
	other := commitAsync(ctx, store, newStreamID("group-other"), 0, nil)
	waitQueued(t, store, 3)
	lock.release(t)
	if o := get(t, first); o.err != nil {
		t.Fatal(o.err)
	}
	oa, ob, oo := get(t, a), get(t, b), get(t, other)
	if oa.err != nil || oo.err != nil {
		t.Fatalf("the first call on the stream: %v; the other stream's: %v", oa.err, oo.err)
	}
	if !errors.Is(ob.err, eventstore.ErrVersionConflict) {
		t.Errorf("the second call on the stream got %v, want a version conflict", ob.err)
	}
	if oa.events[0].TransactionID != oo.events[0].TransactionID {
		t.Errorf("the first call on the stream and the other stream's committed apart (transactions %d, %d), want one group",
			oa.events[0].TransactionID, oo.events[0].TransactionID)
	}
	wantVersion(t, store, stream, 1)
	if n := seen.grouped(); n != 1 {
		t.Errorf("%d groups sent, want 1", n)
	}
}

// A call whose context ends while it waits leaves the queue with the
// context's error and nothing recorded; the others go on, and the store
// keeps its slot (with one slot, a lost one would stop every later call).
func TestGroupCommitCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	store, pool, _ := groupStore(t, 1)
	ctx := t.Context()
	lock := block(t, pool)
	first := commitAsync(ctx, store, newStreamID("group-first"), 0, lock.waits)
	lock.waited(t, pool)
	cctx, cancel := context.WithCancel(ctx)
	gone, kept := newStreamID("group-gone"), newStreamID("group-kept")
	goneOut := commitAsync(cctx, store, gone, 0, nil)
	keptOut := commitAsync(ctx, store, kept, 0, nil)
	waitQueued(t, store, 2)
	cancel()
	if o := get(t, goneOut); !errors.Is(o.err, context.Canceled) {
		t.Errorf("cancelled call: %v, want context.Canceled", o.err)
	}
	waitQueued(t, store, 1)
	lock.release(t)
	if o := get(t, first); o.err != nil {
		t.Fatal(o.err)
	}
	if o := get(t, keptOut); o.err != nil {
		t.Fatal(o.err)
	}
	wantVersion(t, store, gone, 0)
	if _, ok := probeRow(t, pool, gone); ok {
		t.Error("the cancelled call's probe row was recorded")
	}
	later := newStreamID("group-later")
	if o := get(t, commitAsync(ctx, store, later, 0, nil)); o.err != nil {
		t.Fatal(o.err)
	}
	wantVersion(t, store, later, 1)
}

// Many writers on a few streams, two groups in flight: every call that
// returned without an error is in the log once, at the version it was
// told, each stream holds exactly those, and every chain verifies.
func TestGroupCommitConcurrent(t *testing.T) {
	t.Parallel()
	store, pool, seen := groupStore(t, 2)
	ctx := t.Context()
	streams := make([]string, 12)
	for i := range streams {
		streams[i] = newStreamID("group-many")
	}
	var mu sync.Mutex
	committed := map[string]map[int64]string{} // stream → version → event id
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 25 {
				stream := streams[(w+i*5)%len(streams)]
				v, err := store.StreamVersion(ctx, stream)
				if err != nil {
					t.Error(err)
					return
				}
				events, err := store.AppendCommit(ctx, func(*pgx.Batch, []eventstore.Event) error { return nil },
					eventstore.Append{StreamID: stream, StreamType: "test", ExpectedVersion: v,
						Events: []eventstore.NewEvent{newEvent("Changed", `{}`)}})
				o := outcome{events, err}
				switch {
				case o.err == nil:
					mu.Lock()
					if committed[stream] == nil {
						committed[stream] = map[int64]string{}
					}
					e := o.events[0]
					if prev, dup := committed[stream][e.Version]; dup {
						t.Errorf("%s version %d told to two calls (%s, %s)", stream, e.Version, prev, e.ID)
					}
					committed[stream][e.Version] = e.ID.String()
					mu.Unlock()
				case errors.Is(o.err, eventstore.ErrVersionConflict):
				default:
					t.Error(o.err)
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for _, stream := range streams {
		events, err := store.Load(ctx, stream, eventstore.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != len(committed[stream]) {
			t.Errorf("%s holds %d events, %d calls were told they committed", stream, len(events), len(committed[stream]))
		}
		for _, e := range events {
			if committed[stream][e.Version] != e.ID.String() {
				t.Errorf("%s version %d is %s, the call told it committed %q", stream, e.Version, e.ID, committed[stream][e.Version])
			}
		}
		if _, err := eventstore.VerifyStream(ctx, pool, stream); err != nil {
			t.Error(err)
		}
		total += len(events)
	}
	if total == 0 {
		t.Fatal("nothing committed")
	}
	t.Logf("%d of %d calls committed, %d groups", total, 16*25, seen.grouped())
}

// A group whose members append one event to some streams and several to
// others: the one-event streams share one insert (groupAppendSQL), the
// others have their own, and every member still gets its events in the
// order of its streams, each chained to its own stream's head.
func TestGroupCommitMixedMembers(t *testing.T) {
	t.Parallel()
	store, pool, seen := groupStore(t, 1)
	ctx := t.Context()
	old := newStreamID("group-old") // at version 2 before the group
	appendOrFatal(t, store, eventstore.Append{StreamID: old, StreamType: "test", ExpectedVersion: 0,
		Events: []eventstore.NewEvent{newEvent("Opened", `{}`), newEvent("Changed", `{}`)}})
	lock := block(t, pool)
	first := commitAsync(ctx, store, newStreamID("group-first"), 0, lock.waits)
	lock.waited(t, pool)

	a, b1, b2 := newStreamID("group-a"), newStreamID("group-b1"), newStreamID("group-b2")
	members := [][]eventstore.Append{
		{{StreamID: a, StreamType: "test", ExpectedVersion: 0, Events: []eventstore.NewEvent{newEvent("Opened", `{"m":"a"}`)}}},
		{ // one event on b1, two on b2, and one on the old stream
			{StreamID: b1, StreamType: "test", ExpectedVersion: 0, Events: []eventstore.NewEvent{newEvent("Opened", `{"m":"b1"}`)}},
			{StreamID: b2, StreamType: "other", ExpectedVersion: 0,
				Events: []eventstore.NewEvent{newEvent("Opened", `{"m":"b2"}`), newEvent("Changed", `{"m":"b2"}`)}},
			{StreamID: old, StreamType: "test", ExpectedVersion: 2, Events: []eventstore.NewEvent{newEvent("Changed", `{"m":"old"}`)}},
		},
	}
	outs := make([]chan outcome, len(members))
	for i, appends := range members {
		outs[i] = make(chan outcome, 1)
		go func() {
			events, err := store.AppendCommit(ctx, func(b *pgx.Batch, events []eventstore.Event) error { return probe(b, events) }, appends...)
			outs[i] <- outcome{events, err}
		}()
	}
	waitQueued(t, store, len(members))
	lock.release(t)
	if o := get(t, first); o.err != nil {
		t.Fatal(o.err)
	}
	type want struct {
		stream, typ string
		version     int64
	}
	wants := [][]want{
		{{a, "Opened", 1}},
		{{b1, "Opened", 1}, {b2, "Opened", 1}, {b2, "Changed", 2}, {old, "Changed", 3}},
	}
	var xid uint64
	for i, out := range outs {
		o := get(t, out)
		if o.err != nil {
			t.Fatalf("member %d: %v", i, o.err)
		}
		if len(o.events) != len(wants[i]) {
			t.Fatalf("member %d: %d events, want %d: %+v", i, len(o.events), len(wants[i]), o.events)
		}
		for j, w := range wants[i] {
			e := o.events[j]
			if e.StreamID != w.stream || e.Type != w.typ || e.Version != w.version || e.Position == 0 || len(e.Hash) != eventstore.HashSize {
				t.Errorf("member %d, event %d: %s %s v%d at %d, want %s %s v%d", i, j, e.StreamID, e.Type, e.Version, e.Position, w.stream, w.typ, w.version)
			}
			if xid == 0 {
				xid = e.TransactionID
			}
			if e.TransactionID != xid {
				t.Errorf("member %d, event %d: transaction %d, want the group's %d", i, j, e.TransactionID, xid)
			}
		}
	}
	for _, s := range []string{a, b1, b2, old} {
		if st, err := eventstore.VerifyStream(ctx, pool, s); err != nil {
			t.Errorf("%s: %v", s, err)
		} else if s == old && st.Events != 3 {
			t.Errorf("%s: %d events verified, want 3", s, st.Events)
		}
	}
	for _, s := range []string{a, old} { // probe writes the row of a member's last stream
		if v, ok := probeRow(t, pool, s); !ok || v != map[string]int64{a: 1, old: 3}[s] {
			t.Errorf("%s: probe row at version %d (found %v)", s, v, ok)
		}
	}
	wantVersion(t, store, old, 3)
	seen.has(t, "2")
}

// WithMerged: the statement several members of a group queued goes as its
// merged form, once, with the members' arguments as arrays; a call alone
// sends its own. A merged statement PostgreSQL refuses makes the group's
// members run alone, each with the statement it queued.
func TestGroupCommitMerged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		merged string
		offset int64 // what the merged form adds to the probe rows' versions
		group  string
	}{
		{"sent once", `INSERT INTO append_commit_probe (stream_id, version, recorded_at)
SELECT s, v + 1000, now() FROM unnest($1::text[], $2::bigint[]) AS u(s, v)`, 1000, "3"},
		{"refused", `SELECT 1 / 0 FROM unnest($1::text[], $2::bigint[])`, 0, "3 refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, pool := probeTable(t)
			seen := &groupsSeen{}
			store := eventstore.New(pool, eventstore.WithGroupCommit(1, 16), eventstore.OnGroup(seen.observe),
				eventstore.WithMerged(probeSQL, tc.merged))
			ctx := t.Context()
			lock := block(t, pool)
			lone := newStreamID("merged-first")
			first := commitAsync(ctx, store, lone, 0, lock.waits)
			lock.waited(t, pool)
			streams := []string{newStreamID("merged"), newStreamID("merged"), newStreamID("merged")}
			outs := make([]<-chan outcome, len(streams))
			for i, s := range streams {
				outs[i] = commitAsync(ctx, store, s, 0, nil)
			}
			waitQueued(t, store, len(streams))
			lock.release(t)
			if o := get(t, first); o.err != nil {
				t.Fatal(o.err)
			}
			if v, ok := probeRow(t, pool, lone); !ok || v != 1 {
				t.Errorf("the call alone: probe row at %d (found %v), want its own statement's 1", v, ok)
			}
			for i, out := range outs {
				if o := get(t, out); o.err != nil || len(o.events) != 1 || o.events[0].Version != 1 {
					t.Fatalf("%s: %+v, %v", streams[i], o.events, o.err)
				}
				if v, ok := probeRow(t, pool, streams[i]); !ok || v != 1+tc.offset {
					t.Errorf("%s: probe row at %d (found %v), want %d", streams[i], v, ok, 1+tc.offset)
				}
			}
			seen.has(t, tc.group)
		})
	}
}
