package handlers_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/handlers"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/projections"
)

// capturedLog keeps every line the server logs, for the test to read.
type capturedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *capturedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *capturedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRequestTimeoutBoundsDatabaseWork: a request whose database work
// outlasts Config.RequestTimeout (here a command waiting on a row lock
// that the test holds) is answered 503 database_unavailable once the
// timeout is over, not when the lock goes; it appends nothing; and the same
// command succeeds once the lock is gone.
func TestRequestTimeoutBoundsDatabaseWork(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)

	// Short, yet long enough for the unblocked requests of this test under
	// -race beside the package's other tests.
	const timeout = time.Second
	logs := &capturedLog{}
	srv := httptest.NewServer(handlers.New(handlers.Config{
		Pool: e.pool, Queries: projections.NewQueries(e.pool),
		App:   app.New(e.pool, app.WithTxHook(projections.Inline), app.WithClock(domain.SystemClock{})),
		Log:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Ready: func(ctx context.Context) error { return e.pool.Ping(ctx) }, RequestTimeout: timeout,
	}))
	t.Cleanup(srv.Close)
	short := *e
	short.url, short.client = srv.URL, srv.Client()
	short.client.Timeout = time.Minute // the server must answer long before

	// Nothing in the way: the short timeout takes nothing from a request.
	short.must(http.StatusOK, "GET", quotePath(quote, "/preview"), nil)

	// The test's transaction holds the quote's read-model row: the
	// command's inline projection waits on it.
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op once rolled back below
	tag, err := tx.Exec(ctx, `SELECT 1 FROM quote_views WHERE quote_id = $1 FOR UPDATE`, quote)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("lock the quote's row: %v (%d rows)", err, tag.RowsAffected())
	}
	var holder int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	// waiters counts the sessions waiting for the test's lock.
	waiters := func() int {
		var n int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))`, holder).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	seats := map[string]any{"product_code": "EMAIL-SEC", "total_seats": 700}
	start := time.Now()
	r := short.do("PUT", quotePath(quote, "/seats"), e.alex, seats, "X-Request-ID", "timeout-"+e.sfx)
	elapsed := time.Since(start)
	short.wantProblem(r, http.StatusServiceUnavailable, "database_unavailable")
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if d := str(r.body["detail"]); strings.Contains(d, "context") || strings.Contains(d, "deadline") || strings.Contains(d, ".go:") {
		t.Errorf("the problem shows internals: %q", d)
	}
	// It waited for the lock until its deadline, then was let go at once.
	if elapsed < timeout || elapsed > timeout+3*time.Second {
		t.Errorf("the command answered after %s; want the timeout (%s) and little more", elapsed, timeout)
	}
	t.Logf("a command blocked by a row lock: %d after %s (timeout %s)", r.status, elapsed.Round(time.Millisecond), timeout)

	// The log says why (the deadline, as pgx reports it), under the request id.
	var line string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "request_id=timeout-"+e.sfx) && strings.Contains(l, "database unavailable") {
			line = l
		}
	}
	if line == "" || !(strings.Contains(line, "deadline exceeded") || strings.Contains(line, "timeout")) {
		t.Errorf("no log line says the request hit its deadline; log:\n%s", logs.String())
	}
	t.Logf("logged: %s", line)

	// The server gave up the statement too (pgx cancels it when the
	// deadline closes the connection): nothing waits for the lock any more
	// although the test still holds it.
	for deadline := time.Now().Add(10 * time.Second); waiters() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still wait for the lock 10 s after the request's deadline", waiters())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the server let the statement go %s after the request began", time.Since(start).Round(time.Millisecond))

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The timed-out command appended nothing: the quote is still at its
	// first event, and the same command now goes through.
	if n := e.eventCount(quote); n != 1 {
		t.Errorf("the quote has %d events after the timed-out command, want 1 (opened)", n)
	}
	r = short.do("PUT", quotePath(quote, "/seats"), e.alex, seats)
	if r.status != http.StatusOK {
		t.Fatalf("the command once the lock is gone: %s; log:\n%s", r, logs.String())
	}
	e.wantFields("seats after the lock", r.body, map[string]string{"quote_id": quote, "version": "2"})
}

// TestRequestTimeoutIsTheRequestsDeadline: the request's context carries
// the RequestTimeout deadline, seen here by the readiness check (readyz
// caps its own at 3 s, above this one).
func TestRequestTimeoutIsTheRequestsDeadline(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	left := make(chan time.Duration, 1)
	srv := httptest.NewServer(handlers.New(handlers.Config{
		Log: slog.New(slog.DiscardHandler), RequestTimeout: timeout,
		Ready: func(ctx context.Context) error {
			d, ok := ctx.Deadline()
			if !ok {
				left <- -1
			} else {
				left <- time.Until(d)
			}
			return nil
		},
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := <-left; got > timeout || got < timeout/2 {
		t.Errorf("the readiness check's deadline is %s away, want about %s (-1s: none)", got, timeout)
	}
}

// TestServerSideLimitsAre503: a statement the server itself gives up on
// (a statement_timeout or lock_timeout set on the role or database, a
// statement cancelled by an operator) is the database's trouble, not the
// request's, and not the service's bug: 503 database_unavailable, not 500.
// Shown with a real statement_timeout on a command waiting for a lock, and
// for each such SQLSTATE through StatusFor.
func TestServerSideLimitsAre503(t *testing.T) {
	t.Parallel()
	for _, sqlstate := range []string{"57014", "55P03", "25P03", "57P05"} {
		err := fmt.Errorf("append: %w", &pgconn.PgError{Code: sqlstate, Message: "limit"})
		if status, code := handlers.StatusFor(err); status != http.StatusServiceUnavailable || code != "database_unavailable" {
			t.Errorf("StatusFor(SQLSTATE %s) = %d %s, want 503 database_unavailable", sqlstate, status, code)
		}
	}

	e := setup(t)
	quote := e.open(e.contoso)
	url, err := testdb.URL("handlers")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 300 * time.Millisecond
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.Itoa(int(limit.Milliseconds()))
	limited, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(limited.Close)
	srv := httptest.NewServer(handlers.New(handlers.Config{
		Pool: limited, Queries: projections.NewQueries(limited),
		App: app.New(limited, app.WithTxHook(projections.Inline), app.WithClock(domain.SystemClock{})),
		Log: slog.New(slog.DiscardHandler), RequestTimeout: time.Minute, // the server's limit comes first
	}))
	t.Cleanup(srv.Close)
	lim := *e
	lim.url, lim.client = srv.URL, srv.Client()

	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op once rolled back below
	if _, err := tx.Exec(ctx, `SELECT 1 FROM quote_views WHERE quote_id = $1 FOR UPDATE`, quote); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := lim.do("PUT", quotePath(quote, "/seats"), e.alex, map[string]any{"product_code": "EMAIL-SEC", "total_seats": 700})
	elapsed := time.Since(start)
	lim.wantProblem(r, http.StatusServiceUnavailable, "database_unavailable")
	if elapsed < limit || elapsed > limit+10*time.Second {
		t.Errorf("answered after %s, want the statement_timeout (%s) and a little more", elapsed, limit)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.eventCount(quote); n != 1 {
		t.Errorf("the quote has %d events after the refused command, want 1", n)
	}
}
