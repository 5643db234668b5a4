package handlers_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/handlers"
)

// TestTextThatPostgreSQLCannotHold: invalid UTF-8 and NUL never reach the
// database as a 500; a path names nothing and a parameter is refused.
func TestTextThatPostgreSQLCannotHold(t *testing.T) {
	t.Parallel()
	e := setup(t)
	nulCursor := base64.RawURLEncoding.EncodeToString([]byte(`["\u0000","x"]`))
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/customers/%ff", 404, "not_found"},
		{"GET", "/v1/customers/%00", 404, "not_found"},
		{"POST", "/v1/customers/%ff/change-quotes", 404, "not_found"},
		{"GET", "/v1/customers/%ff/change-quotes", 404, "not_found"},
		{"GET", "/v1/customers?q=%00", 400, "invalid_parameter"},
		{"GET", "/v1/customers?q=%ff", 400, "invalid_parameter"},
		{"GET", "/v1/customers?cursor=" + nulCursor, 400, "invalid_cursor"},
	} {
		e.wantProblem(e.do(tc.method, tc.path, e.alex, nil), tc.status, tc.code)
	}
}

// TestDuplicateFieldIsRefused: encoding/json keeps the last of two equal
// keys; a billing API must not guess which one was meant.
func TestDuplicateFieldIsRefused(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	before := e.eventCount(quote)
	r := e.do("PUT", quotePath(quote, "/seats"), e.alex, `{"product_code":"EMAIL-SEC","total_seats":700,"total_seats":900}`)
	e.wantProblem(r, 400, "invalid_field")
	if str(r.body["field"]) != "total_seats" {
		t.Errorf("field = %v, want total_seats", r.body["field"])
	}
	if got := e.eventCount(quote); got != before {
		t.Errorf("%d events after the refusal, want %d", got, before)
	}
}

// TestIdempotencyKeyComparesTheJSON: the same request written with other
// spacing or key order is the same request.
func TestIdempotencyKeyComparesTheJSON(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	key := "canon-" + e.sfx
	first := e.must(200, "PUT", quotePath(quote, "/seats"), `{"product_code":"EMAIL-SEC","total_seats":700}`, "Idempotency-Key", key)
	again := e.do("PUT", quotePath(quote, "/seats"), e.alex, "{ \"total_seats\": 700,\n  \"product_code\": \"EMAIL-SEC\" }", "Idempotency-Key", key)
	e.sameAnswer(first, again)
	e.wantProblem(e.do("PUT", quotePath(quote, "/seats"), e.alex, `{"product_code":"EMAIL-SEC","total_seats":701}`, "Idempotency-Key", key),
		422, "idempotency_key_reused")
	if got := e.eventCount(quote); got != 2 {
		t.Errorf("%d events, want 2 (opened, one seat change)", got)
	}
}

// TestMetricsLabelsAreBounded: a client cannot mint label values with
// invented methods.
func TestMetricsLabelsAreBounded(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.do("XYZZY", "/healthz", "", nil)
	m := e.do("GET", "/metrics", "", nil)
	if m.status != 200 {
		t.Fatalf("metrics: %s", m)
	}
	if strings.Contains(string(m.raw), "XYZZY") {
		t.Error("the invented method became a label value")
	}
	if !strings.Contains(string(m.raw), `method="OTHER"`) {
		t.Error(`no method="OTHER" series after a request with an invented method`)
	}
}

// TestUnreachableDatabaseIs503: the contract's 503, with Retry-After, when
// no connection to the database can be made.
func TestUnreachableDatabaseIs503(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1; the pool connects lazily.
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	srv := httptest.NewServer(handlers.New(handlers.Config{Pool: pool, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready: func(ctx context.Context) error { return pool.Ping(ctx) }}))
	t.Cleanup(srv.Close)
	for _, path := range []string{"/v1/customers", "/readyz"} {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer nw-alex-5f2c9e1d7a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p handlers.Problem
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 503 {
			t.Fatalf("%s: %d %+v %v, want 503", path, resp.StatusCode, p, err)
		}
		want := map[string]string{"/v1/customers": "database_unavailable", "/readyz": "not_ready"}[path]
		if p.Code != want {
			t.Errorf("%s: code %q, want %q", path, p.Code, want)
		}
		if path == "/v1/customers" && resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", path)
		}
	}
}

// TestReadyzSaysWhy: /readyz names what is not ready when that may be
// shown to anyone, and never the database's error (which names hosts and
// users) on an endpoint that needs no key.
func TestReadyzSaysWhy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err         error
		want, never string
	}{
		{&handlers.ReadinessError{Reason: "migrations pending: 009_future"}, "009_future", ""},
		{errors.New("failed to connect to user=secret-user database=x"), "database", "secret-user"},
	} {
		srv := httptest.NewServer(handlers.New(handlers.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready: func(context.Context) error { return tc.err }}))
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var p handlers.Problem
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 503 || p.Code != "not_ready" || !strings.Contains(p.Detail, tc.want) ||
			(tc.never != "" && strings.Contains(p.Detail, tc.never)) {
			t.Errorf("readyz with %v: %d %+v, want 503 not_ready naming %q, not %q", tc.err, resp.StatusCode, p, tc.want, tc.never)
		}
	}
}

// TestIdempotencyKeysExpire: a key older than the time to live is purged,
// and the request then runs again; a younger one stays.
func TestIdempotencyKeysExpire(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	oldKey, newKey := "old-"+e.sfx, "new-"+e.sfx
	e.must(200, "POST", quotePath(quote, "/save"), nil, "Idempotency-Key", oldKey)
	e.must(200, "POST", quotePath(quote, "/save"), nil, "Idempotency-Key", newKey)
	if _, err := e.pool.Exec(context.Background(), `UPDATE idempotency_keys SET created_at = now() - interval '25 hours'
WHERE key = $1`, oldKey); err != nil {
		t.Fatal(err)
	}
	n, err := handlers.PurgeIdempotencyKeys(context.Background(), e.pool, handlers.DefaultIdempotencyTTL)
	if err != nil || n < 1 {
		t.Fatalf("purge: %d keys, %v; want at least the old one", n, err)
	}
	var left []string
	rows, err := e.pool.Query(context.Background(), `SELECT key FROM idempotency_keys WHERE key = ANY($1) ORDER BY key`, []string{oldKey, newKey})
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		left = append(left, k)
	}
	if len(left) != 1 || left[0] != newKey {
		t.Errorf("keys left %v, want only %s", left, newKey)
	}
	// The purged key serves another request now (a save of a saved quote
	// changes nothing, so the version stays).
	r := e.must(200, "POST", quotePath(quote, "/save"), nil, "Idempotency-Key", oldKey)
	if r.header.Get("Idempotent-Replayed") != "" {
		t.Error("a purged key was replayed")
	}
}

// TestVersionConflict: when concurrent commands on one quote keep
// colliding and the application layer may not decide again, the losers get
// 409 version_conflict and append nothing.
func TestVersionConflict(t *testing.T) {
	t.Parallel()
	// Every append transaction lingers, so that all the requests load the
	// quote before any of them commits: they must collide.
	linger := app.WithTxHook(func(ctx context.Context, _ pgx.Tx, _ []eventstore.Event) error {
		time.Sleep(300 * time.Millisecond)
		return nil
	})
	e := setup(t, withAppOptions(app.WithMaxRetries(0), linger))
	quote := e.open(e.contoso)
	const n = 6
	replies := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			replies[i] = e.do("PUT", quotePath(quote, "/seats"), e.alex, map[string]any{"product_code": "EMAIL-SEC", "total_seats": 700 + i})
		})
	}
	wg.Wait()
	won, lost := 0, 0
	for _, r := range replies {
		switch r.status {
		case 200:
			won++
		case 409:
			e.wantProblem(r, 409, "version_conflict")
			lost++
		default:
			t.Errorf("unexpected answer: %s", r)
		}
	}
	// A request that arrived after a winner committed may win too; at
	// least one must have collided.
	if won < 1 || lost < 1 || won+lost != n {
		t.Errorf("%d won and %d lost of %d", won, lost, n)
	}
	if got := e.eventCount(quote); got != 1+won {
		t.Errorf("%d events, want %d (opened, and one seat change per winner)", got, 1+won)
	}
}

// TestIdempotencyKeyOfAnEmptyBody: no body, {} and null are the same
// request to the decoder, so they are the same request to the key.
func TestIdempotencyKeyOfAnEmptyBody(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	e.must(200, "PUT", quotePath(quote, "/seats"), map[string]any{"product_code": "EMAIL-SEC", "total_seats": 700})
	key := "empty-" + e.sfx
	first := e.must(200, "POST", quotePath(quote, "/save"), nil, "Idempotency-Key", key)
	for _, body := range []string{"{}", "null", " "} {
		e.sameAnswer(first, e.do("POST", quotePath(quote, "/save"), e.alex, body, "Idempotency-Key", key))
	}
	if got := e.eventCount(quote); got != 3 {
		t.Errorf("%d events, want 3 (opened, seats, one save)", got)
	}
}
