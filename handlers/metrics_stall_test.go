package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// /metrics reports a log stalled behind an open transaction: the events
// waiting, how long the transaction has been open, that it is stalled and
// which transaction it is; when the transaction ends, it names it no more.
func TestMetricsReportAStalledLog(t *testing.T) {
	t.Parallel()
	pool := testdb.Pool(t, "handlers")
	ctx := t.Context()
	m := NewMetrics(pool)
	// A transaction held past 5 s would stall every other test's readers
	// on the server that long; 300 ms shows the same.
	m.stallThreshold = 300 * time.Millisecond
	srv := httptest.NewServer(New(Config{Pool: pool, Metrics: m, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	scrape := func() string {
		t.Helper()
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("/metrics: %d %v\n%s", resp.StatusCode, err, body)
		}
		return string(body)
	}

	for _, want := range []string{
		"# TYPE upsell_log_unreadable_events gauge", "# TYPE upsell_log_oldest_transaction_seconds gauge",
		"# TYPE upsell_log_stalled gauge",
		"# HELP upsell_log_stalled 1 when committed events wait behind a transaction open for 5 s or more",
	} {
		if out := scrape(); !strings.Contains(out, want) {
			t.Fatalf("/metrics does not say %q:\n%s", want, out)
		}
	}
	for _, name := range []string{"upsell_log_unreadable_events", "upsell_log_oldest_transaction_seconds", "upsell_log_stalled"} {
		help := regexp.MustCompile(`(?m)^# HELP ` + name + ` (.*)$`).FindStringSubmatch(scrape())
		if help == nil || !strings.Contains(help[1], "transaction") {
			t.Errorf("%s: HELP %q does not name the cause", name, help)
		}
	}

	// A session opens a transaction, takes an id and is abandoned.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	app := "metrics-stall-" + uuid.NewString()[:8]
	var pid int32
	if err := tx.QueryRow(ctx, "SELECT set_config('application_name', $1, true), pg_current_xact_id(), pg_backend_pid()", app).Scan(nil, nil, &pid); err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.New(pool).Append(ctx, eventstore.Append{StreamID: "stall-" + uuid.NewString(), StreamType: "stall",
		Events: []eventstore.NewEvent{{Type: "StallProbe", Data: json.RawMessage(`{}`)}, {Type: "StallProbe", Data: json.RawMessage(`{}`)}}}); err != nil {
		t.Fatal(err)
	}

	holder := fmt.Sprintf(`upsell_log_stall_holder_info{application=%q,database="upsell_test_handlers",pid="%d",state="idle in transaction"} 1`, app, pid)
	var out string
	deadline := time.Now().Add(10 * time.Second)
	for out = scrape(); !strings.Contains(out, holder); out = scrape() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s, /metrics does not name the abandoned transaction (%s):\n%s", holder, grepLog(out))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, "\nupsell_log_stalled 1\n") || gauge(t, out, "upsell_log_unreadable_events") < 2 ||
		gauge(t, out, "upsell_log_oldest_transaction_seconds") < 0.3 {
		t.Errorf("while stalled behind pid %d; want stalled 1, at least our 2 events unreadable, the oldest transaction open 0.3 s or more:\n%s", pid, grepLog(out))
	}
	if help := regexp.MustCompile(`(?m)^# HELP upsell_log_stall_holder_info (.*)$`).FindStringSubmatch(out); help == nil ||
		!strings.Contains(help[1], "pg_terminate_backend") {
		t.Errorf("HELP of upsell_log_stall_holder_info: %q", help)
	}
	if help := regexp.MustCompile(`(?m)^# HELP upsell_log_oldest_transaction_seconds (.*)$`).FindStringSubmatch(out); help == nil ||
		!strings.Contains(help[1], "idle_in_transaction_session_timeout") || !strings.Contains(help[1], "pg_terminate_backend") {
		t.Errorf("HELP of upsell_log_oldest_transaction_seconds does not name the fix: %q", help)
	}

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	mine := regexp.MustCompile(`upsell_log_stall_holder_info\{[^}]*pid="` + strconv.Itoa(int(pid)) + `"`)
	deadline = time.Now().Add(10 * time.Second)
	for out = scrape(); mine.MatchString(out); out = scrape() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s, /metrics still names the ended transaction:\n%s", grepLog(out))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// grepLog keeps the upsell_log_ lines of a scrape.
func grepLog(out string) string {
	var b strings.Builder
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "upsell_log_") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// gauge is the value of an unlabelled series in a scrape.
func gauge(t *testing.T, out, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s in the scrape:\n%s", name, grepLog(out))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
