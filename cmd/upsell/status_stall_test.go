package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/handlers"
)

// stallStatusJSON is the "stall" object of `upsell status --json`.
type stallStatusJSON struct {
	Stalled             bool    `json:"stalled"`
	StalledAfterSeconds float64 `json:"stalled_after_seconds"`
	Horizon             uint64  `json:"horizon"`
	UnreadableEvents    int64   `json:"unreadable_events"`
	FirstUnreadable     string  `json:"first_unreadable"`
	Transaction         *struct {
		PID             int32     `json:"pid"`
		Database        string    `json:"database"`
		SameDatabase    bool      `json:"same_database"`
		ApplicationName string    `json:"application_name"`
		User            string    `json:"user"`
		State           string    `json:"state"`
		TransactionID   uint64    `json:"transaction_id"`
		BackendXmin     uint32    `json:"backend_xmin"`
		Started         time.Time `json:"started"`
		OpenSeconds     float64   `json:"open_seconds"`
		StateSeconds    float64   `json:"state_seconds"`
		EndsBy          string    `json:"ends_by"`
	} `json:"transaction"`
	Summary string `json:"summary"`
}

// stallOf runs `upsell status --json` with args and returns its stall
// object, checking that the fields of before are still there.
func stallOf(t *testing.T, url string, args ...string) stallStatusJSON {
	t.Helper()
	code, out, errOut := upsell(t, url, append([]string{"status", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("status --json: exit %d; %s", code, errOut)
	}
	var s struct {
		statusJSON
		Stall *stallStatusJSON `json:"stall"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	if s.Stall == nil || s.Head == "" || len(s.Followers) == 0 {
		t.Fatalf("status --json lacks the stall object, the head or the followers:\n%s", out)
	}
	return *s.Stall
}

// metricValues gathers once and returns the values of the unlabelled
// gauges named.
func metricValues(t *testing.T, reg *prometheus.Registry, names ...string) (first, second float64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		if len(f.GetMetric()) == 1 {
			values[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	for _, n := range names {
		if _, ok := values[n]; !ok {
			t.Fatalf("no metric %s", n)
		}
	}
	return values[names[0]], values[names[1]]
}

// A stall of the log is bounded: a session configured as `upsell`
// configures its own (UPSELL_DB_IDLE_TX_TIMEOUT=2s) opens a transaction,
// appends an event and is abandoned. Events committed after it are not
// readable while it is open, and `upsell status` and /metrics say so and
// name it; within the timeout (and a margin) the server ends the session,
// its event is gone, and a reader of the log reads everything else.
func TestStallIsBounded(t *testing.T) {
	t.Parallel()
	url, pool := storyDB(t)
	// The service's pool, configured by connect as `upsell serve` is.
	c := &cli{getenv: envOf(url, "UPSELL_DB_IDLE_TX_TIMEOUT", stallTimeout.String()), stdout: io.Discard, stderr: io.Discard,
		log: slog.New(slog.DiscardHandler)}
	t.Cleanup(c.close)
	svc, err := c.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Seeing the stall reported takes a few runs of `upsell status` in the
	// 2 s before the server ends it; a machine too busy to finish them in
	// time gets another try (the bound itself is checked every time).
	var pid int32
	for attempt := 1; ; attempt++ {
		var seen bool
		if pid, seen = abandonTransaction(t, url, pool, svc); seen {
			break
		}
		if attempt == 3 {
			t.Fatalf("in %d tries, the server ended the abandoned transaction before the test had seen it reported: too slow for a %s timeout", attempt, stallTimeout)
		}
		t.Logf("try %d: the timeout ended the transaction before the test had seen it reported; again", attempt)
	}

	// Once it ended, status names it no more.
	deadline := time.Now().Add(10 * time.Second)
	s := stallOf(t, url)
	for ; s.Transaction != nil && s.Transaction.PID == pid; s = stallOf(t, url) {
		if time.Now().After(deadline) {
			t.Fatalf("status still names the ended transaction of pid %d: %+v", pid, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s.StalledAfterSeconds != eventstore.StallThreshold.Seconds() {
		t.Errorf("status --json: stalled_after_seconds %v, want the default %v", s.StalledAfterSeconds, eventstore.StallThreshold.Seconds())
	}
}

// stallTimeout is UPSELL_DB_IDLE_TX_TIMEOUT in TestStallIsBounded.
const stallTimeout = 2 * time.Second

// abandonTransaction opens a transaction on a session of svc, appends an
// event in it and leaves it idle; appends events on pool; checks that no
// reader reads them while it is open, and that status and /metrics report
// the stall (seen is false when the timeout ended the transaction before
// the reports were all seen); then that the server ends the session within
// the timeout and a margin and a reader reads every event but the
// abandoned one.
func abandonTransaction(t *testing.T, url string, pool, svc *pgxpool.Pool) (pid int32, seen bool) {
	t.Helper()
	ctx := context.Background()
	store := eventstore.New(pool)
	var dbName string
	if err := pool.QueryRow(ctx, "SELECT current_database()").Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	conn, err := svc.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var setting string
	if err := conn.QueryRow(ctx, "SHOW idle_in_transaction_session_timeout").Scan(&setting); err != nil || setting != "2s" {
		t.Fatalf("the service's session has idle_in_transaction_session_timeout %q (%v), want 2s", setting, err)
	}

	// A command begins, appends, and its caller vanishes: the transaction
	// stays open, idle.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	abandonedEvents, err := store.AppendTx(ctx, tx, eventstore.Append{StreamID: "stall-abandoned-" + uuid.NewString(), StreamType: "stall",
		Events: []eventstore.NewEvent{{Type: "StallProbe", Data: json.RawMessage(`{"abandoned":true}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	abandoned := time.Now() // its last statement: the idle timer starts
	xid := abandonedEvents[0].TransactionID

	// Others append meanwhile.
	appended, err := store.Append(ctx, eventstore.Append{StreamID: "stall-" + uuid.NewString(), StreamType: "stall",
		Events: []eventstore.NewEvent{{Type: "StallProbe", Data: json.RawMessage(`{"n":1}`)}, {Type: "StallProbe", Data: json.RawMessage(`{"n":2}`)},
			{Type: "StallProbe", Data: json.RawMessage(`{"n":3}`)}}})
	if err != nil {
		t.Fatal(err)
	}

	// While the transaction is open, a reader of the log gets none of
	// them (the horizon is at most its id)...
	events, _, err := store.ReadLog(ctx, eventstore.Cursor{TransactionID: xid}, 100)
	if err != nil || len(events) != 0 {
		t.Fatalf("a reader read %d events past the open transaction %d (%v)", len(events), xid, err)
	}
	// ... and status and /metrics report the stall, naming it. Other
	// tests' transactions on the server may be older than ours for a
	// moment: poll until ours is the one named.
	seen = observeStall(t, url, pool, pid, xid, dbName, len(appended), abandoned)

	// The server ends the session; the readers go on.
	const margin = 5 * time.Second
	for {
		var alive bool
		if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		if !alive {
			break
		}
		if time.Since(abandoned) > stallTimeout+margin {
			t.Fatalf("the session of pid %d is still there %s after it was abandoned", pid, time.Since(abandoned))
		}
		time.Sleep(20 * time.Millisecond)
	}
	ended := time.Since(abandoned)
	if ended < stallTimeout-100*time.Millisecond {
		t.Errorf("the session ended %s after it was abandoned, before its timeout %s", ended, stallTimeout)
	}
	missing := map[uuid.UUID]bool{}
	for _, e := range appended {
		missing[e.ID] = true
	}
	for cur := (eventstore.Cursor{TransactionID: xid}); len(missing) > 0; {
		events, next, err := store.ReadLog(ctx, cur, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if e.ID == abandonedEvents[0].ID {
				t.Fatalf("the abandoned transaction's event was read: %+v", e)
			}
			delete(missing, e.ID)
		}
		cur = next
		if len(events) == 0 {
			if time.Since(abandoned) > stallTimeout+margin {
				t.Fatalf("%d of the %d events still unread %s after the transaction was abandoned", len(missing), len(appended), time.Since(abandoned))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("the session ended %s after it was abandoned; the reader caught up after %s",
		ended.Round(time.Millisecond), time.Since(abandoned).Round(time.Millisecond))
	if err := tx.Commit(ctx); err == nil {
		t.Error("the abandoned transaction committed after the server ended its session")
	}
	var kept int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM events WHERE event_id = $1", abandonedEvents[0].ID).Scan(&kept); err != nil || kept != 0 {
		t.Errorf("the abandoned transaction's event is stored (%d, %v)", kept, err)
	}
	return pid, seen
}

// observeStall checks what `upsell status` (JSON and text) and /metrics
// say while the transaction xid of pid is open with appended events
// behind it; false when the timeout ended it before they named it.
func observeStall(t *testing.T, url string, pool *pgxpool.Pool, pid int32, xid uint64, dbName string, appended int, abandoned time.Time) bool {
	t.Helper()
	inTime := func() bool { return time.Since(abandoned) < stallTimeout }
	var s stallStatusJSON
	for s = stallOf(t, url, "--stall-after", "100ms"); s.Transaction == nil || s.Transaction.PID != pid || !s.Stalled; s = stallOf(t, url, "--stall-after", "100ms") {
		if !inTime() {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	tr := s.Transaction
	if tr.Database != dbName || !tr.SameDatabase || tr.ApplicationName != "upsell" || tr.State != "idle in transaction" ||
		tr.TransactionID != xid || tr.OpenSeconds < 0.1 || tr.StateSeconds <= 0 || tr.Started.IsZero() ||
		!strings.Contains(tr.EndsBy, fmt.Sprintf("pg_terminate_backend(%d)", pid)) || !strings.Contains(tr.EndsBy, "idle_in_transaction_session_timeout") {
		t.Errorf("status --json names the transaction %+v; want pid %d, transaction %d, application upsell, database %s, idle in transaction", *tr, pid, xid, dbName)
	}
	if s.UnreadableEvents < int64(appended) || s.Horizon > xid || s.StalledAfterSeconds != 0.1 || s.FirstUnreadable == "" ||
		!strings.HasPrefix(s.Summary, fmt.Sprintf("%d events wait behind transaction pid %d (application upsell, database %s", s.UnreadableEvents, pid, dbName)) {
		t.Errorf("status --json stall %+v; want at least %d events unreadable, the horizon at most %d", s, appended, xid)
	}
	// Whoever the oldest transaction is, ours is open: our events wait.
	unreadable, oldest := metricValues(t, handlers.NewMetrics(pool).Registry, "upsell_log_unreadable_events", "upsell_log_oldest_transaction_seconds")
	if unreadable < float64(appended) || oldest <= 0 {
		t.Errorf("/metrics: upsell_log_unreadable_events %v, upsell_log_oldest_transaction_seconds %v while our %d events wait behind our open transaction",
			unreadable, oldest, appended)
	}
	want := fmt.Sprintf("events wait behind transaction pid %d (application upsell, database %s, user ", pid, dbName)
	for {
		_, out, _ := upsell(t, url, "status", "--stall-after", "100ms")
		if strings.Contains(out, want) {
			ends := fmt.Sprintf("; it ends by that session's idle_in_transaction_session_timeout (when set) or SELECT pg_terminate_backend(%d)\n\nNAME ", pid)
			if !strings.HasPrefix(out, "log head ") || !strings.Contains(out, "\nlog STALLED: ") || !strings.Contains(out, ends) {
				t.Errorf("status (text) during the stall; want \"log STALLED: ...%s...%s\":\n%s", want, ends, out)
			}
			t.Logf("upsell status during the stall:\n%s", out)
			return true
		}
		if !inTime() {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The stall line of `upsell status` when nothing waits, and --stall-after
// refused when negative.
func TestStatusStallLine(t *testing.T) {
	t.Parallel()
	url, _ := storyDB(t)
	// Other tests' transactions hold the server's horizon for moments:
	// poll for a moment when nothing of this database waits.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out, errOut := upsell(t, url, "status")
		lines := strings.SplitN(out, "\n", 4)
		if len(lines) == 4 && strings.HasPrefix(lines[0], "log head ") && lines[1] == "log: every committed event is readable" && lines[2] == "" &&
			strings.HasPrefix(lines[3], "NAME ") {
			s := stallOf(t, url)
			if s.UnreadableEvents == 0 && !s.Stalled && s.FirstUnreadable == "" && s.Summary == "every committed event is readable" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never said that every event is readable:\n%s%s", out, errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, errOut := upsell(t, url, "status", "--stall-after", "-1s"); code != 2 || !strings.Contains(errOut, "--stall-after -1s") {
		t.Errorf("status --stall-after -1s: exit %d, %q; want 2 naming the flag", code, errOut)
	}
	if code, _, _ := upsell(t, url, "status", "--stall-after", "soon"); code != 2 {
		t.Errorf("status --stall-after soon: exit %d, want 2", code)
	}
}
