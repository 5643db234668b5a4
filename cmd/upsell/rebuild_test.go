package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/projections"
)

// snapshot is every row of a read-model table as JSON, ordered by its key.
func snapshot(t *testing.T, pool *pgxpool.Pool, table, key string) (string, int) {
	t.Helper()
	var rows string
	var n int
	err := pool.QueryRow(context.Background(), fmt.Sprintf(
		`SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.%s), '[]')::text, count(*) FROM %s t`, key, table)).Scan(&rows, &n)
	if err != nil {
		t.Fatalf("snapshot %s: %v", table, err)
	}
	return rows, n
}

// rebuildLines checks the output of a rebuild of the named projections, in
// that order, over a log of events events, on a non-terminal stdout.
func rebuildLines(t *testing.T, out string, counts map[string]int64, names ...string) {
	t.Helper()
	if strings.Contains(out, "\r") || strings.Contains(out, "\033") {
		t.Errorf("rebuild drew a terminal progress bar on a non-terminal stdout: %q", out)
	}
	if !strings.HasSuffix(out, "\n") {
		t.Errorf("rebuild output does not end with a newline: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	i := 0
	for _, name := range names {
		events := counts[name]
		progress := regexp.MustCompile(`^rebuild ` + name + `: +\d+\.\d%  \d+/\d+ events  \d+ events/s  (\d+:\d\d|--:--) left$`)
		start := fmt.Sprintf("rebuild %s:   0.0%%  0/%d events  0 events/s  --:-- left", name, events)
		if i >= len(lines) || lines[i] != start {
			t.Errorf("rebuild %s: line %d is not %q:\n%s", name, i+1, start, out)
			return
		}
		i++
		for i < len(lines) && progress.MatchString(lines[i]) {
			i++
		}
		done := regexp.MustCompile(fmt.Sprintf(`^rebuild %s: done, %d events in \d+:\d\d; the new table is live$`, name, events))
		if i >= len(lines) || !done.MatchString(lines[i]) {
			t.Errorf("rebuild %s: no done line matching %s after its progress:\n%s", name, done, out)
			return
		}
		if !strings.Contains(lines[i-1], fmt.Sprintf(" 100.0%%  %d/%d events", events, events)) {
			t.Errorf("rebuild %s: the last progress line before done is not at 100%%: %q", name, lines[i-1])
		}
		i++
	}
	if i != len(lines) {
		t.Errorf("rebuild printed more than its projections' lines:\n%s", out)
	}
}

// waitLogSettled waits until every transaction that appended to the log
// has ended and so has every older transaction on the server (in any
// database: transaction ids are the server's). Readers of the log (the
// customers projector, and a rebuild of it) read only below the oldest
// open transaction, so until then a rebuild of customers leaves the newest
// events to the projector.
func waitLogSettled(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var settled bool
		if err := pool.QueryRow(context.Background(), `SELECT coalesce(
	(SELECT max(transaction_id) FROM events) < pg_snapshot_xmin(pg_current_snapshot()), true)`).Scan(&settled); err != nil {
			t.Fatal(err)
		}
		if settled {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a transaction older than the newest event is still open on the server after 60 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRebuild(t *testing.T) {
	t.Parallel()
	url := testdb.Empty(t)
	for _, args := range [][]string{{"migrate"}, {"import", "../../fixtures/import-example.json"}, {"demo"}} {
		if code, out, errOut := upsell(t, url, args...); code != 0 {
			t.Fatalf("%v: code %d\n%s\n%s", args, code, out, errOut)
		}
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // before testdb drops the database
	// Each projection's rebuild reads, and counts, the events of its stream
	// type.
	events := map[string]int64{}
	for name, streamType := range map[string]string{"quotes": domain.StreamChangeQuote, "customers": domain.StreamCustomer} {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE stream_type = $1`, streamType).Scan(&n); err != nil {
			t.Fatal(err)
		}
		events[name] = n
	}

	quotesBefore, nq := snapshot(t, pool, "quote_views", "quote_id")
	if nq != 1 {
		t.Fatalf("the demo wrote %d quote_views rows (want 1, written inline)", nq)
	}
	// Without a projector, only the customer the demo's order amended is
	// there: commands write the customer views inline.
	if rows, nc := snapshot(t, pool, "customer_views", "customer_id"); nc != 1 || !strings.Contains(rows, `"name": "Contoso Ltd"`) {
		t.Fatalf("customer_views has %d rows without a projector or rebuild (want Contoso only, written inline): %s", nc, rows)
	}

	var out bytes.Buffer // not a terminal
	var errOut bytes.Buffer
	waitLogSettled(t, pool)
	if code := run(ctx, []string{"rebuild"}, envWith(url), &out, &errOut); code != 0 {
		t.Fatalf("rebuild: code %d\n%s\n%s", code, out.String(), errOut.String())
	}
	rebuildLines(t, out.String(), events, "quotes", "customers")

	quotesAfter, _ := snapshot(t, pool, "quote_views", "quote_id")
	if quotesAfter != quotesBefore {
		t.Errorf("quote_views differs after a rebuild from what the demo wrote inline:\nbefore %s\nafter  %s", quotesBefore, quotesAfter)
	}
	customers, nc := snapshot(t, pool, "customer_views", "customer_id")
	if nc != 4 || !strings.Contains(customers, `"name": "Contoso Ltd"`) || !strings.Contains(customers, `"monthly_total": "4240.30"`) {
		t.Errorf("customer_views after a rebuild: %d rows (want the fixture's 4, Contoso at 4240.30): %s", nc, customers)
	}
	// The rebuild moved the customers projector's checkpoint to the end.
	if lag, err := projections.Lag(ctx, pool, "customers"); err != nil || lag.Events != 0 {
		t.Errorf("customers projection after a rebuild: lag %+v, %v (want 0 events behind)", lag, err)
	}
	var rebuildTables int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname IN ('upsell_rebuild', 'upsell_retired')`).Scan(&rebuildTables); err != nil || rebuildTables != 0 {
		t.Errorf("tables left in the rebuild schemas: %d, %v", rebuildTables, err)
	}

	// Again: the same rows.
	out.Reset()
	errOut.Reset()
	if code := run(ctx, []string{"rebuild"}, envWith(url), &out, &errOut); code != 0 {
		t.Fatalf("second rebuild: code %d\n%s\n%s", code, out.String(), errOut.String())
	}
	rebuildLines(t, out.String(), events, "quotes", "customers")
	if q, _ := snapshot(t, pool, "quote_views", "quote_id"); q != quotesBefore {
		t.Errorf("quote_views differs after a second rebuild:\nbefore %s\nafter  %s", quotesBefore, q)
	}
	if c, _ := snapshot(t, pool, "customer_views", "customer_id"); c != customers {
		t.Errorf("customer_views differs after a second rebuild:\nbefore %s\nafter  %s", customers, c)
	}

	// One projection by name.
	out.Reset()
	errOut.Reset()
	if code := run(ctx, []string{"rebuild", "customers"}, envWith(url), &out, &errOut); code != 0 {
		t.Fatalf("rebuild customers: code %d\n%s\n%s", code, out.String(), errOut.String())
	}
	rebuildLines(t, out.String(), events, "customers")
	if c, _ := snapshot(t, pool, "customer_views", "customer_id"); c != customers {
		t.Errorf("customer_views differs after rebuild customers:\nbefore %s\nafter  %s", customers, c)
	}
}

func TestRebuildRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		url      string
		args     []string
		code     int
		inStderr []string
	}{
		{"an unknown projection", "x", []string{"rebuild", "nosuch"}, 2, []string{`upsell rebuild: unknown projection "nosuch"`, "quotes", "customers"}},
		{"two projections", "x", []string{"rebuild", "quotes", "customers"}, 2, []string{"at most one projection"}},
		{"no DATABASE_URL", "", []string{"rebuild"}, 1, []string{"DATABASE_URL is not set"}},
		{"an unmigrated database", "", []string{"rebuild", "quotes"}, 1, []string{"run `upsell migrate` first"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := tt.url
			if tt.name == "an unmigrated database" {
				url = testdb.Empty(t)
			}
			code, out, errOut := upsell(t, url, tt.args...)
			if code != tt.code {
				t.Errorf("code %d, want %d; stderr %q", code, tt.code, errOut)
			}
			for _, want := range tt.inStderr {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr %q lacks %q", errOut, want)
				}
			}
			if strings.Contains(out, "done") {
				t.Errorf("stdout says done: %q", out)
			}
		})
	}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// clockedWriter records when (on the fake clock) each write happened.
type clockedWriter struct {
	clock  *fakeClock
	writes []string
	at     []time.Time
}

func (w *clockedWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	w.at = append(w.at, w.clock.now())
	return len(p), nil
}

func TestProgressBarPlain(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	w := &clockedWriter{clock: clk}
	b := newProgressBar(w, "quotes", false, clk.now)

	b.update(0, 1000)
	if len(w.writes) != 1 || w.writes[0] != "rebuild quotes:   0.0%  0/1000 events  0 events/s  --:-- left\n" {
		t.Fatalf("the start line: %q", w.writes)
	}
	// 100 updates over 20 s (every 200 ms), from 5 to 500 events.
	for i := 1; i <= 100; i++ {
		clk.advance(200 * time.Millisecond)
		b.update(int64(5*i), 1000)
	}
	during := w.writes[1:]
	if len(during) == 0 || len(during) > 4 {
		t.Errorf("%d lines during 20 s of progress (want 1 to 4, at most one per 5 s): %q", len(during), during)
	}
	for i := 1; i < len(w.at); i++ {
		if gap := w.at[i].Sub(w.at[i-1]); gap < 5*time.Second {
			t.Errorf("lines %d and %d are %v apart (want at least 5 s): %q", i, i+1, gap, w.writes)
		}
	}
	// Printed once 5 s have passed since the last line.
	clk.advance(5 * time.Second) // 25 s: 500 of 1000, 20 events/s, 25 s left
	b.update(500, 1000)
	if last := w.writes[len(w.writes)-1]; last != "rebuild quotes:  50.0%  500/1000 events  20 events/s  0:25 left\n" {
		t.Errorf("a progress line at 25 s: %q", last)
	}

	n := len(w.writes)
	clk.advance(time.Second)
	b.update(1000, 1000) // the end is always shown
	if len(w.writes) != n+1 || !strings.HasPrefix(w.writes[n], "rebuild quotes: 100.0%  1000/1000 events") {
		t.Errorf("the last update did not print a line at 100%%: %q", w.writes[n:])
	}
	clk.advance(39 * time.Second) // 65 s in all
	b.finish()
	if last := w.writes[len(w.writes)-1]; last != "rebuild quotes: done, 1000 events in 1:05; the new table is live\n" {
		t.Errorf("the done line: %q", last)
	}
	for _, s := range w.writes {
		if strings.Contains(s, "\r") || strings.Contains(s, "\033") || !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
			t.Errorf("a non-terminal line is not one plain line: %q", s)
		}
	}
}

func TestProgressBarTerminal(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	w := &clockedWriter{clock: clk}
	b := newProgressBar(w, "customers", true, clk.now)

	b.update(0, 1000)
	clk.advance(50 * time.Millisecond)
	b.update(10, 1000) // within 100 ms of the last draw: not drawn
	if len(w.writes) != 1 {
		t.Fatalf("draws %q (want only the first: redraws are at most every 100 ms)", w.writes)
	}
	clk.advance(9950 * time.Millisecond) // 10 s: 500 of 1000, 50 events/s, 10 s left
	b.update(500, 1000)
	if len(w.writes) != 2 {
		t.Fatalf("draws %q (want a redraw after 100 ms)", w.writes)
	}
	want := "\r\033[Krebuild customers [###############...............]  50.0%  500/1000 events  50 events/s  0:10 left"
	if w.writes[1] != want {
		t.Errorf("the redraw at 50%%:\n got %q\nwant %q", w.writes[1], want)
	}
	for _, s := range w.writes {
		if !strings.HasPrefix(s, "\r") || strings.Contains(s, "\n") || !strings.Contains(s, "events/s") || !strings.Contains(s, " left") {
			t.Errorf("a terminal redraw is not one line redrawn in place with its rate and time left: %q", s)
		}
	}
	clk.advance(10 * time.Second)
	b.update(1000, 1000)
	clk.advance(55 * time.Second) // 75 s in all
	b.finish()
	all := strings.Join(w.writes, "")
	if !strings.HasSuffix(all, "[##############################] 100.0%  1000/1000 events  13 events/s  0:00 left\n"+
		"rebuild customers: done, 1000 events in 1:15; the new table is live\n") {
		t.Errorf("the end of a terminal bar: %q", all)
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0:00"},
		{999 * time.Millisecond, "0:01"},
		{59 * time.Second, "0:59"},
		{65 * time.Second, "1:05"},
		{10*time.Minute + 3*time.Second, "10:03"},
		{2 * time.Hour, "120:00"},
	} {
		if got := clock(tt.d); got != tt.want {
			t.Errorf("clock(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// A rebuild runs beside a serving API: the API keeps answering from the
// new tables, and the customers projector goes on in the new table.
func TestRebuildWhileServing(t *testing.T) {
	t.Parallel()
	url := testdb.Empty(t)
	for _, args := range [][]string{{"migrate"}, {"import", "../../fixtures/import-example.json"}, {"demo"}} {
		if code, out, errOut := upsell(t, url, args...); code != 0 {
			t.Fatalf("%v: code %d\n%s\n%s", args, code, out, errOut)
		}
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	srv := startServe(t, url)
	api := newAPIClient(t, srv.base)
	contoso := func() string {
		t.Helper()
		status, _, body := api.do("GET", "/v1/customers/cust-contoso", alexKey, "")
		if status != 200 && status != 404 {
			t.Fatalf("GET /v1/customers/cust-contoso: %d %s", status, body)
		}
		return string(body)
	}
	waitFor := func(what, want string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(contoso(), want); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the customers projector did not show %s within 30 s: %s\nlog:\n%s", what, contoso(), srv.stderr.String())
			}
		}
	}
	waitFor("the demo's order", `"monthly_total":"4240.30"`)

	code, out, errOut := upsell(t, url, "rebuild")
	if code != 0 {
		t.Fatalf("rebuild while serving: code %d\n%s\n%s", code, out, errOut)
	}

	// The API goes on, on the rebuilt tables: a whole order through it.
	status, _, body := api.do("POST", "/v1/customers/cust-contoso/change-quotes", alexKey, "")
	var opened struct {
		QuoteID string `json:"quote_id"`
	}
	if err := json.Unmarshal(body, &opened); status != 201 || err != nil {
		t.Fatalf("open a quote after the rebuild: %d %s", status, body)
	}
	q := "/v1/change-quotes/" + opened.QuoteID
	for _, step := range []struct{ method, path, body string }{
		{"PUT", q + "/seats", `{"product_code": "EMAIL-SEC", "total_seats": 800}`},
		{"POST", q + "/save", ""},
		{"POST", q + "/review", ""},
		{"POST", q + "/acknowledgements", `{"msa_governs_order": true, "authorized_to_order": true}`},
		{"POST", q + "/submit", ""},
	} {
		if status, _, body := api.do(step.method, step.path, alexKey, step.body); status != 200 {
			t.Fatalf("%s %s after the rebuild: %d %s", step.method, step.path, status, body)
		}
	}
	// The customers projector goes on in the rebuilt table. (The submit
	// waits for it, but at most 5 s: an older transaction open elsewhere on
	// the server may hold it back longer.)
	waitFor("the order submitted after the rebuild", `"total_users":800`)
	status, _, body = api.do("GET", "/v1/customers/cust-contoso/change-quotes", alexKey, "")
	if status != 200 || strings.Count(string(body), `"quote_id"`) != 2 || !strings.Contains(string(body), opened.QuoteID) {
		t.Errorf("Contoso's quotes after the rebuild: %d %s (want the demo's and the new one)", status, body)
	}

	// What the projector and the inline writer made after the rebuild is
	// what another rebuild makes.
	waitLogSettled(t, pool)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		lag, err := projections.Lag(ctx, pool, "customers")
		if err != nil {
			t.Fatal(err)
		}
		if lag.Events == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the customers projector is %d events behind after 30 s", lag.Events)
		}
	}
	quotes, _ := snapshot(t, pool, "quote_views", "quote_id")
	customers, _ := snapshot(t, pool, "customer_views", "customer_id")
	if code, out, errOut := upsell(t, url, "rebuild"); code != 0 {
		t.Fatalf("second rebuild while serving: code %d\n%s\n%s", code, out, errOut)
	}
	if q2, _ := snapshot(t, pool, "quote_views", "quote_id"); q2 != quotes {
		t.Errorf("quote_views written while serving differs from a rebuild:\nserved  %s\nrebuilt %s", quotes, q2)
	}
	if c2, _ := snapshot(t, pool, "customer_views", "customer_id"); c2 != customers {
		t.Errorf("customer_views written while serving differs from a rebuild:\nserved  %s\nrebuilt %s", customers, c2)
	}

	srv.cancel()
	select {
	case code := <-srv.exit:
		srv.exit <- code
		if code != 0 {
			t.Errorf("serve returned %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop within 15 s")
	}
	if log := srv.stderr.String(); strings.Contains(log, "level=ERROR") || strings.Contains(log, "level=WARN") {
		t.Errorf("serve logged errors or warnings around the rebuilds:\n%s", log)
	}
}
