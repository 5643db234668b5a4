package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/handlers"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/relay"
)

// unpublished counts the events whose id is not in the SQL topic.
func unpublished(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM events e
WHERE NOT EXISTS (SELECT 1 FROM watermill_upsell_events m WHERE m.uuid = e.event_id::text)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A restore into a younger cluster is refused by every command that reads
// or appends, shown by status and /readyz, and repaired by `upsell
// rebaseline`, after which the relay publishes every event, old and new.
func TestRebaselineCommand(t *testing.T) {
	t.Parallel()
	url, pool := storyDB(t)
	ctx := context.Background()
	store := eventstore.New(pool)
	tr := postgresTransport(t)

	// The relay publishes the story, then stops; more events follow that
	// it has not published.
	r := startCommand(t, envOf(url), "relay")
	waitRelayed(t, pool, tr, r.stderr)
	if code := r.stop(); code != 0 {
		t.Fatalf("relay: exit %d; %s", code, r.stderr.String())
	}
	for range 3 {
		if _, err := store.Append(ctx, eventstore.Append{StreamID: "quote-" + uuid.NewString(), StreamType: "quote",
			Events: []eventstore.NewEvent{{Type: "Unpublished", Data: json.RawMessage(`{}`)}}}); err != nil {
			t.Fatal(err)
		}
	}
	// A consumer group of the topic that has read part of it.
	if _, err := pool.Exec(ctx, `INSERT INTO watermill_offsets_upsell_events (consumer_group, offset_acked, last_processed_transaction_id)
SELECT 'billing-test', "offset", transaction_id FROM watermill_upsell_events ORDER BY transaction_id, "offset" OFFSET 2 LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	relayAt, err := relay.Checkpoint(ctx, pool, tr)
	if err != nil || relayAt == (eventstore.Cursor{}) {
		t.Fatalf("the relay's checkpoint: %s, %v", relayAt, err)
	}

	testdb.SimulateRestore(t, pool)

	// Refused: every command that connects with connectCurrent.
	c := &cli{getenv: envOf(url), stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.DiscardHandler)}
	defer c.close()
	var ahead *logAheadError
	if _, err := c.connectCurrent(ctx); !errors.As(err, &ahead) {
		t.Fatalf("connectCurrent after a restore: %v, want a *logAheadError", err)
	}
	for _, args := range [][]string{{"audit", "verify", "--all"}, {"relay"}, {"serve", "--addr", "127.0.0.1:0"}} {
		// Bounded: a command that is not refused would run on.
		runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var errBuf strings.Builder
		code := run(runCtx, args, envOf(url), io.Discard, &errBuf)
		cancel()
		errOut := errBuf.String()
		if code != 1 || !strings.Contains(errOut, "run `upsell rebaseline` before anything appends to or reads the log") {
			t.Errorf("%v after a restore: exit %d, want 1 naming the fix; stderr:\n%s", args, code, errOut)
		}
	}
	// status runs and says so.
	code, out, errOut := upsell(t, url, "status")
	if code != 0 || !strings.Contains(out, "log AHEAD: ") || !strings.Contains(out, "upsell rebaseline") || !strings.Contains(out, "relay.postgres") {
		t.Errorf("status after a restore: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("status after the restore:\n%s", out)
	code, out, errOut = upsell(t, url, "status", "--json")
	var js struct {
		LogAhead struct {
			Ahead   bool   `json:"ahead"`
			Summary string `json:"summary"`
		} `json:"log_ahead"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &js) != nil || !js.LogAhead.Ahead || js.LogAhead.Summary == "" {
		t.Errorf("status --json after a restore: exit %d, %+v\n%s%s", code, js, out, errOut)
	}
	// /readyz is not ready, and says why.
	var re *handlers.ReadinessError
	if err := ready(ctx, pool); !errors.As(err, &re) || !strings.Contains(re.Reason, "upsell rebaseline") {
		t.Errorf("ready after a restore: %v", err)
	}

	// A dry run changes nothing.
	digest := testdb.RebaselineDigest(t, pool)
	code, out, errOut = upsell(t, url, "rebaseline", "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run, nothing changed") || !strings.Contains(out, "would move checkpoint relay.postgres") {
		t.Errorf("rebaseline --dry-run: exit %d\n%s%s", code, out, errOut)
	}
	if testdb.RebaselineDigest(t, pool) != digest {
		t.Fatal("rebaseline --dry-run changed the tables")
	}

	code, out, errOut = upsell(t, url, "rebaseline")
	if code != 0 || !strings.Contains(out, "moved checkpoint relay.postgres") || !strings.Contains(out, "moved consumer group billing-test") {
		t.Fatalf("rebaseline: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("upsell rebaseline:\n%s", out)

	if _, err := c.connectCurrent(ctx); err != nil {
		t.Errorf("connectCurrent after the rebaseline: %v", err)
	}
	if err := ready(ctx, pool); err != nil {
		t.Errorf("ready after the rebaseline: %v", err)
	}
	if code, out, errOut := upsell(t, url, "status"); code != 0 || strings.Contains(out, "AHEAD") {
		t.Errorf("status after the rebaseline: exit %d\n%s%s", code, out, errOut)
	}
	digest = testdb.RebaselineDigest(t, pool)
	if code, out, errOut := upsell(t, url, "rebaseline"); code != 0 || !strings.HasPrefix(out, "nothing to rebaseline") {
		t.Errorf("second rebaseline: exit %d\n%s%s", code, out, errOut)
	}
	if testdb.RebaselineDigest(t, pool) != digest {
		t.Fatal("a second rebaseline changed the tables")
	}
	if code, out, errOut := upsell(t, url, "audit", "verify", "--all"); code != 0 {
		t.Errorf("audit verify --all after the rebaseline: exit %d\n%s%s", code, out, errOut)
	}

	// The relay picks up where it was: the events it had not published,
	// and one appended now, all reach the topic.
	if _, err := store.Append(ctx, eventstore.Append{StreamID: "quote-" + uuid.NewString(), StreamType: "quote",
		Events: []eventstore.NewEvent{{Type: "AfterRebaseline", Data: json.RawMessage(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	if n := unpublished(t, pool); n != 4 {
		t.Errorf("%d events unpublished before the relay runs again, want 4", n)
	}
	r = startCommand(t, envOf(url), "relay")
	waitRelayed(t, pool, tr, r.stderr)
	r.stop()
	if n := unpublished(t, pool); n != 0 {
		t.Errorf("%d events never published after the rebaseline", n)
	}

	// The consumer group reads on from where it was: every message after
	// its place, including the newly published ones.
	var unread int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM watermill_upsell_events m, watermill_offsets_upsell_events g
WHERE g.consumer_group = 'billing-test' AND (m.transaction_id, m."offset") <= (g.last_processed_transaction_id, g.offset_acked)
  AND m.uuid IN (SELECT event_id::text FROM events ORDER BY position DESC LIMIT 4)`).Scan(&unread); err != nil {
		t.Fatal(err)
	}
	if unread != 0 {
		t.Errorf("the consumer group billing-test is past %d of the events published after the restore", unread)
	}
}
