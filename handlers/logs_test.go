package handlers_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/handlers"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/projections"
)

// secretLog is a log that the servers of a test write together.
type secretLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *secretLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *secretLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// keyForms are the ways an API key could show in a log: the key, and its
// SHA-256 as stored (raw, hex either case, PostgreSQL's bytea text,
// base64). The hash is no credential, but it names the key for good and,
// for a short key, is enough to find the key offline: it is kept out of
// logs like the key.
func keyForms(key string) []string {
	h := importer.HashAPIKey(key)
	x := hex.EncodeToString(h)
	return []string{key, string(h), x, strings.ToUpper(x), `\x` + x,
		base64.StdEncoding.EncodeToString(h), base64.RawURLEncoding.EncodeToString(h)}
}

// wantNoKeys fails the test for every form of every key found in log.
func wantNoKeys(t *testing.T, log string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		for i, form := range keyForms(k) {
			if strings.Contains(log, form) {
				what := "the key"
				if i > 0 {
					what = "its hash"
				}
				t.Errorf("the log holds %s of %q:\n%s", what, k, log)
			}
		}
	}
}

// TestNoKeyInLogs sends requests with good keys, unknown keys, keys in odd
// header forms and places, Idempotency-Keys, requests over the rate
// limit and requests while the database is away, to servers logging at
// debug level; no key and no key's hash may appear in the log.
func TestNoKeyInLogs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	log := &secretLog{}
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	serve := func(cfg handlers.Config) string {
		cfg.App = app.New(e.pool, app.WithTxHook(projections.Inline), app.WithClock(domain.SystemClock{}))
		cfg.Queries = projections.NewQueries(e.pool)
		cfg.Log = logger
		ts := httptest.NewServer(handlers.New(cfg))
		t.Cleanup(ts.Close)
		return ts.URL
	}
	plain := serve(handlers.Config{Pool: e.pool})
	limited := serve(handlers.Config{Pool: e.pool, RateLimit: 1})

	// A server whose database does not answer (nothing listens on port
	// 1): the key's lookup fails, and the failure is logged.
	cfg, err := pgxpool.ParseConfig("postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	down, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(down.Close)
	downSrv := httptest.NewServer(handlers.New(handlers.Config{Pool: down, Log: logger}))
	t.Cleanup(downSrv.Close)

	unknown := "nw-nobody-" + e.sfx + "-0f3a9c"
	nearMiss := e.alex[:len(e.alex)-1] + "x"
	client := &http.Client{Timeout: 30 * time.Second}
	statuses := map[int]int{}
	send := func(base, method, path, body string, header ...string) int {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		statuses[resp.StatusCode]++
		return resp.StatusCode
	}
	bearer := func(k string) []string { return []string{"Authorization", "Bearer " + k} }

	// Good keys, reads and commands, with Idempotency-Keys (a first
	// answer, a replay, a reuse with another body).
	for _, k := range []string{e.alex, e.sam} {
		send(plain, "GET", "/v1/customers", "", bearer(k)...)
		send(plain, "GET", "/v1/customers/"+e.contoso, "", bearer(k)...)
	}
	send(plain, "GET", "/v1/customers/"+e.street, "", bearer(e.kim)...) // another MSP's: 404
	idem := "idem-" + e.sfx
	open := func() int {
		return send(plain, "POST", "/v1/customers/"+e.contoso+"/change-quotes", "", append(bearer(e.alex), "Idempotency-Key", idem)...)
	}
	if s := open(); s != http.StatusCreated {
		t.Fatalf("open a quote: %d", s)
	}
	open()
	send(plain, "POST", "/v1/customers/"+e.adatum+"/change-quotes", "", append(bearer(e.alex), "Idempotency-Key", idem)...)
	send(plain, "POST", "/v1/customers/"+e.adatum+"/change-quotes", "", append(bearer(e.alex), "Idempotency-Key", "bad key with spaces")...)
	// A key where a product code belongs: refused, and only the client
	// is told.
	send(plain, "POST", "/v1/customers/"+e.contoso+"/change-quotes", "", bearer(e.alex)...)
	quote := e.open(e.contoso)
	send(plain, "POST", "/v1/change-quotes/"+quote+"/products", `{"product_code":"`+e.sam+`","term_type":"12 Month","seats":1}`, bearer(e.alex)...)

	// Unknown keys, and good keys in forms and places that are refused.
	for _, h := range [][]string{
		bearer(unknown),
		bearer(nearMiss),
		{"Authorization", "bearer   " + e.alex + "   "}, // accepted: case and spaces do not matter
		{"Authorization", e.alex},
		{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("u-alex:"+e.alex))},
		{"Authorization", "Token " + e.alex},
		{"Authorization", "Bearer " + e.alex + ", Bearer " + e.sam},
		{"Authorization", "Bearer " + e.alex, "Authorization", "Bearer " + e.kim},
		{"Authorization", "Bearer " + e.alex + "\xff"}, // obs-text: a valid header byte, not UTF-8
		{"X-API-Key", e.alex},
		{"Cookie", "api_key=" + e.alex},
		{"Authorization", "Bearer " + unknown, "Idempotency-Key", idem},
	} {
		send(plain, "GET", "/v1/customers", "", h...)
		send(plain, "POST", "/v1/customers/"+e.contoso+"/change-quotes", "", h...)
	}
	send(plain, "GET", "/v1/customers?api_key="+e.alex+"&q="+e.sam, "") // in the query, which is not logged
	send(plain, "GET", "/healthz", "", bearer(e.alex)...)               // a public route ignores it
	send(plain, "GET", "/nowhere", "", bearer(e.alex)...)               // an unknown path

	// Over the rate limit.
	for range 4 {
		send(limited, "GET", "/v1/customers", "", bearer(e.kim)...)
		send(limited, "POST", "/v1/customers/"+e.contoso+"/change-quotes", "", append(bearer(e.alex), "Idempotency-Key", "lim-"+e.sfx)...)
	}

	// The database away.
	send(downSrv.URL, "GET", "/v1/customers", "", bearer(e.alex)...)
	send(downSrv.URL, "GET", "/v1/customers", "", bearer(unknown)...)

	got := log.String()
	for _, status := range []int{200, 201, 401, 404, 422, 429, 503} {
		if statuses[status] == 0 {
			t.Errorf("no request was answered %d (answers: %v): the test does not cover what it should", status, statuses)
		}
	}
	for _, want := range []string{"status=401", "status=429", "status=503", "database unavailable", "user_id=u-alex", "user_id=u-kim"} {
		if !strings.Contains(got, want) {
			t.Errorf("the log lacks %q, so the test proves less than it says:\n%s", want, got)
		}
	}
	wantNoKeys(t, got, e.alex, e.sam, e.kim, unknown, nearMiss)
}
