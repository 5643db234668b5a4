package eventstore_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// openTx is a transaction that took a transaction id and stays open, as an
// abandoned session's does.
type openTx struct {
	tx  pgx.Tx
	xid uint64
	pid int32
	app string
}

func beginWithXID(t *testing.T, ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}) *openTx {
	t.Helper()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	o := &openTx{tx: tx, app: "stall-test-" + uuid.NewString()[:8]}
	if _, err := tx.Exec(ctx, "SELECT set_config('application_name', $1, true)", o.app); err != nil {
		t.Fatal(err)
	}
	var xid string
	if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text, pg_backend_pid()").Scan(&xid, &o.pid); err != nil {
		t.Fatal(err)
	}
	if o.xid, err = strconv.ParseUint(xid, 10, 64); err != nil {
		t.Fatal(err)
	}
	return o
}

// appendSome appends n events to a new stream and returns their ids.
func appendSome(t *testing.T, store *eventstore.Store, n int) []uuid.UUID {
	t.Helper()
	var evs []eventstore.NewEvent
	for i := range n {
		evs = append(evs, newEvent("StallProbe", fmt.Sprintf(`{"n":%d}`, i)))
	}
	var ids []uuid.UUID
	for _, e := range appendOrFatal(t, store, eventstore.Append{StreamID: newStreamID("stall"), StreamType: "stall", Events: evs}) {
		ids = append(ids, e.ID)
	}
	return ids
}

// stallUntil polls StallAfter until ok holds (other tests' transactions,
// anywhere on the server, come and go in front of ours), and fails after
// 10 s with the last report.
func stallUntil(t *testing.T, db eventstore.DBTX, threshold time.Duration, what string, ok func(eventstore.StallInfo) bool) eventstore.StallInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := eventstore.StallAfter(t.Context(), db, threshold)
		if err != nil {
			t.Fatal(err)
		}
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s, still not %s: %+v (holder %+v)", what, s, s.Holder)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func heldBy(pid int32) func(eventstore.StallInfo) bool {
	return func(s eventstore.StallInfo) bool { return s.Holder != nil && s.Holder.PID == pid }
}

// A transaction that took an id and stays open holds back the events
// committed after it: Stall counts them and names the transaction; once it
// ends, they are read and Stall names it no more.
func TestStallNamesTheOpenTransaction(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	pool := store.Pool()
	open := beginWithXID(t, ctx, pool)

	// Asked from inside the open transaction, Stall does not count it.
	s, err := eventstore.Stall(ctx, open.tx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Holder != nil && (s.Holder.PID == open.pid || s.Holder.TransactionID == open.xid) {
		t.Errorf("Stall, asked inside the open transaction %d (pid %d), reports that transaction: %+v, holder %+v", open.xid, open.pid, s, s.Holder)
	}

	ids := appendSome(t, store, 3)
	const threshold = 200 * time.Millisecond
	s = stallUntil(t, pool, threshold, fmt.Sprintf("held by pid %d for %s", open.pid, threshold), func(s eventstore.StallInfo) bool {
		return heldBy(open.pid)(s) && s.Holder.Open >= threshold
	})
	h := s.Holder
	if h.TransactionID != open.xid || s.Horizon > open.xid || h.Database != "upsell_test_eventstore" || !h.SameDatabase ||
		h.ApplicationName != open.app || h.State != "idle in transaction" || h.User == "" || h.Started.IsZero() ||
		h.InState <= 0 || h.InState > h.Open || h.Prepared() || h.GID != "" {
		t.Errorf("holder %+v (horizon %d); want transaction %d of pid %d, application %s, database upsell_test_eventstore, idle in transaction",
			h, s.Horizon, open.xid, open.pid, open.app)
	}
	if s.UnreadableEvents < 3 || s.FirstUnreadable.TransactionID < s.Horizon || s.FirstUnreadableRecordedAt.IsZero() || !s.Stalled || s.Threshold != threshold {
		t.Errorf("%+v; want at least our 3 events unreadable, the first at or after the horizon, stalled after %s", s, threshold)
	}
	// Our events are indeed behind the horizon: no reader gets them.
	var behind int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE event_id = ANY($1) AND transaction_id >= $2::text::xid8`,
		ids, strconv.FormatUint(s.Horizon, 10)).Scan(&behind); err != nil || behind != 3 {
		t.Errorf("%d of our 3 events at or after the horizon %d (%v)", behind, s.Horizon, err)
	}
	for _, want := range []string{"events wait behind transaction pid " + strconv.Itoa(int(open.pid)) + " (application " + open.app,
		"database upsell_test_eventstore", "idle in transaction for ", "open for ", "idle_in_transaction_session_timeout",
		fmt.Sprintf("pg_terminate_backend(%d)", open.pid)} {
		if !strings.Contains(s.String(), want) {
			t.Errorf("%q does not say %q", s, want)
		}
	}
	if strings.Contains(s.String(), "another database") {
		t.Errorf("%q: the holder is in this database", s)
	}
	// With the default threshold, a transaction open for less than 5 s
	// is no stall yet.
	if d, err := eventstore.Stall(ctx, pool); err != nil {
		t.Fatal(err)
	} else if d.Holder != nil && d.Holder.PID == open.pid && d.Holder.Open < eventstore.StallThreshold && d.Stalled {
		t.Errorf("stalled after %s, before the default threshold %s: %+v", d.Holder.Open, eventstore.StallThreshold, d)
	}

	if err := open.tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	cur := eventstore.Cursor{TransactionID: open.xid}
	follow(t, store, &cur, 100, ids...)
	stallUntil(t, pool, eventstore.StallThreshold, "clear of our transaction", func(s eventstore.StallInfo) bool {
		return !heldBy(open.pid)(s) && !s.Stalled
	})
}

// The horizon is the server's: a transaction open in another database
// holds this one's readers back too, and Stall names that database.
func TestStallSeesOtherDatabases(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	other, err := pgx.Connect(ctx, testdb.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close(context.Background()) })
	var otherDB string
	if err := other.QueryRow(ctx, "SELECT current_database()").Scan(&otherDB); err != nil {
		t.Fatal(err)
	}
	if otherDB == "upsell_test_eventstore" {
		t.Fatalf("DATABASE_URL names the test database itself")
	}
	open := beginWithXID(t, ctx, other)
	ids := appendSome(t, store, 2)

	s := stallUntil(t, store.Pool(), time.Hour, fmt.Sprintf("held by pid %d", open.pid), heldBy(open.pid))
	if h := s.Holder; h.Database != otherDB || h.SameDatabase || h.TransactionID != open.xid || h.ApplicationName != open.app {
		t.Errorf("holder %+v; want transaction %d in database %s, not this one", h, open.xid, otherDB)
	}
	if s.UnreadableEvents < 2 || s.Stalled {
		t.Errorf("%+v; want at least our 2 events unreadable, not stalled within an hour", s)
	}
	if want := "database " + otherDB + " (another database of the server)"; !strings.Contains(s.String(), want) {
		t.Errorf("%q does not say %q", s, want)
	}
	if err := open.tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	cur := eventstore.Cursor{TransactionID: open.xid}
	follow(t, store, &cur, 100, ids...)
}

// How each kind of holder ends, in words.
func TestStallWords(t *testing.T) {
	t.Parallel()
	started := time.Now().Add(-time.Minute)
	for _, c := range []struct {
		h    eventstore.StallHolder
		want []string
	}{
		{eventstore.StallHolder{PID: 42, Database: "shop", SameDatabase: true, ApplicationName: "psql", State: "idle in transaction",
			Started: started, Open: 195 * time.Second, InState: 192 * time.Second},
			[]string{"transaction pid 42", "application psql, database shop, idle in transaction for 3m12s, open for 3m15s",
				"idle_in_transaction_session_timeout", "pg_terminate_backend(42)"}},
		{eventstore.StallHolder{PID: 43, Database: "other", State: "active", Started: started, Open: 1500 * time.Millisecond, InState: time.Second},
			[]string{"no application_name, database other (another database of the server), active for 1s, open for 1.5s",
				"statement_timeout", "pg_terminate_backend(43)"}},
		{eventstore.StallHolder{Database: "shop", SameDatabase: true, State: "prepared", GID: "o'k", TransactionID: 7, Started: started, Open: time.Hour},
			[]string{`prepared transaction "o'k" (transaction id 7)`, "prepared 1h0m0s ago", "COMMIT PREPARED 'o''k' or ROLLBACK PREPARED 'o''k' in database shop",
				"no timeout"}},
		{eventstore.StallHolder{PID: 44, Database: "shop", SameDatabase: true},
			[]string{"not visible to this role", "pg_read_all_stats", "pg_terminate_backend(44)"}},
	} {
		s := eventstore.StallInfo{UnreadableEvents: 5, Holder: &c.h}
		for _, w := range c.want {
			if !strings.Contains(s.String(), w) {
				t.Errorf("%q does not say %q", s, w)
			}
		}
	}
	if got := (eventstore.StallInfo{}).String(); got != "every committed event is readable" {
		t.Errorf("no stall: %q", got)
	}
	if got := (eventstore.StallInfo{UnreadableEvents: 1, Horizon: 9}).String(); got != "1 event waits behind transaction id 9, which ended or is not visible" {
		t.Errorf("no holder: %q", got)
	}
}
