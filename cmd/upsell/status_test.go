package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/relay"
)

type statusJSON struct {
	Head      string `json:"head"`
	Events    int64  `json:"events"`
	Followers []struct {
		Name          string    `json:"name"`
		Kind          string    `json:"kind"`
		Checkpoint    string    `json:"checkpoint"`
		LagEvents     int64     `json:"lag_events"`
		LagSeconds    float64   `json:"lag_seconds"`
		LastMovedAt   time.Time `json:"last_moved_at"`
		LeaderRunning bool      `json:"leader_running"`
	} `json:"followers"`
}

func status(t *testing.T, url string) statusJSON {
	t.Helper()
	code, out, errOut := upsell(t, url, "status", "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d; %s", code, errOut)
	}
	var s statusJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	return s
}

// relayStatus is the relay.postgres entry of a status.
func relayStatus(t *testing.T, s statusJSON) (i int) {
	t.Helper()
	for i, f := range s.Followers {
		if f.Name == "relay.postgres" {
			return i
		}
	}
	t.Fatalf("status lists no relay.postgres: %+v", s)
	return -1
}

func eventCount(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// `upsell status` lists the relay with its checkpoint and lag: none while
// it runs caught up, the events appended since once it has stopped.
func TestStatus(t *testing.T) {
	t.Parallel()
	url, pool := storyDB(t)
	ctx := context.Background()
	tr := postgresTransport(t)
	r := startCommand(t, envOf(url), "relay")
	waitRelayed(t, pool, tr, r.stderr)
	at, err := relay.Checkpoint(ctx, pool, tr)
	if err != nil {
		t.Fatal(err)
	}

	s := status(t, url)
	f := s.Followers[relayStatus(t, s)]
	if f.Kind != "relay" || f.Checkpoint != at.String() || f.LagEvents != 0 || f.LagSeconds != 0 || !f.LeaderRunning ||
		time.Since(f.LastMovedAt) > time.Hour || f.LastMovedAt.IsZero() {
		t.Errorf("the running relay, caught up: %+v; want kind relay, checkpoint %s, no lag, a leader running", f, at)
	}
	// The head is the newest event below the oldest open transaction on
	// the server: the relay's checkpoint, or before it while another
	// test's transaction is open.
	if head, err := eventstore.ParseCursor(s.Head); err != nil || head == (eventstore.Cursor{}) || at.Less(head) || s.Events != eventCount(t, pool) {
		t.Errorf("head %s (%v), %d events; want the head at most %s, and %d events", s.Head, err, s.Events, at, eventCount(t, pool))
	}
	code, out, errOut := upsell(t, url, "status")
	if code != 0 {
		t.Fatalf("status: exit %d; %s", code, errOut)
	}
	line := regexp.MustCompile(`(?m)^relay\.postgres +relay +` + regexp.QuoteMeta(at.String()) + ` +0 +0s +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +running$`)
	if !strings.HasPrefix(out, "log head ") || !strings.Contains(out, "NAME  ") || !line.MatchString(out) {
		t.Errorf("status (text) while the relay runs caught up; want a line matching %s:\n%s", line, out)
	}

	if code := r.stop(); code != 0 {
		t.Fatalf("relay exited %d; stderr:\n%s", code, r.stderr.String())
	}
	before := eventCount(t, pool)
	if code, out, errOut := upsell(t, url, "demo"); code != 0 {
		t.Fatalf("second demo: %d\n%s\n%s", code, out, errOut)
	}
	behind := eventCount(t, pool) - before
	if behind <= 0 {
		t.Fatalf("the second demo appended %d events", behind)
	}
	s = status(t, url)
	f = s.Followers[relayStatus(t, s)]
	if f.Checkpoint != at.String() || f.LagEvents != behind || f.LagSeconds <= 0 {
		t.Errorf("events appended after the relay stopped: %+v; want checkpoint %s, %d events behind, a positive age", f, at, behind)
	}
	if s.Events != before+behind {
		t.Errorf("status counts %d events, want %d", s.Events, before+behind)
	}
	_, out, _ = upsell(t, url, "status")
	line = regexp.MustCompile(`(?m)^relay\.postgres +relay +` + regexp.QuoteMeta(at.String()) + fmt.Sprintf(` +%d +[0-9.]+m?s +\S+ +`, behind))
	if !line.MatchString(out) {
		t.Errorf("status (text) after the relay stopped; want a line matching %s:\n%s", line, out)
	}
	if code, _, errOut := upsell(t, url, "status", "extra"); code != 2 || !strings.Contains(errOut, "status takes no arguments") {
		t.Errorf("status extra: %d %q", code, errOut)
	}
}

// Whether a relay is running is a question about this database: a relay
// of another database on the same server (advisory locks are per
// database) is not this one's leader.
func TestStatusLeaderIsPerDatabase(t *testing.T) {
	t.Parallel()
	url, pool := storyDB(t)
	tr := postgresTransport(t)
	r := startCommand(t, envOf(url), "relay")
	waitRelayed(t, pool, tr, r.stderr)
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exited %d", code)
	}

	other, otherPool := storyDB(t)
	o := startCommand(t, envOf(other), "relay")
	waitRelayed(t, otherPool, tr, o.stderr)
	s := status(t, other)
	if f := s.Followers[relayStatus(t, s)]; !f.LeaderRunning {
		t.Fatalf("the other database's own relay is not shown running: %+v", f)
	}

	s = status(t, url)
	if f := s.Followers[relayStatus(t, s)]; f.LeaderRunning {
		t.Errorf("status of a database whose relay stopped says its leader runs, because a relay of another database (same lock key) does: %+v", f)
	}
	_, out, _ := upsell(t, url, "status")
	if !regexp.MustCompile(`(?m)^relay\.postgres .* none running$`).MatchString(out) {
		t.Errorf("status (text) should say none running:\n%s", out)
	}
}
