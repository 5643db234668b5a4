package handlers

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/projections"
)

// limiterClock is a limiter's clock that moves only when told.
type limiterClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *limiterClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *limiterClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func limiterAt(t *testing.T, rate float64) (*rateLimiter, *limiterClock) {
	t.Helper()
	l := newRateLimiter(rate)
	if l == nil {
		t.Fatalf("newRateLimiter(%v) = nil", rate)
	}
	c := &limiterClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	l.now = c.now
	return l, c
}

func limiterKey(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }

func TestNewRateLimiter(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{0, -1} {
		if l := newRateLimiter(rate); l != nil {
			t.Errorf("newRateLimiter(%v) is a limiter, want none", rate)
		}
	}
	for _, tt := range []struct {
		rate, burst float64
		full        time.Duration
	}{
		{0.5, 1, 2 * time.Second},
		{1, 1, time.Second},
		{2.5, 3, 1200 * time.Millisecond},
		{100, 100, time.Second},
	} {
		l := newRateLimiter(tt.rate)
		if l.burst != tt.burst || l.full != tt.full {
			t.Errorf("rate %v: burst %v, full after %s; want %v, %s", tt.rate, l.burst, l.full, tt.burst, tt.full)
		}
	}
}

// TestTokenBucket: a key may send its burst at once, then one request per
// 1/rate seconds; the refusal says how long until the next token; other
// keys have buckets of their own.
func TestTokenBucket(t *testing.T) {
	t.Parallel()
	l, clock := limiterAt(t, 2) // burst 2, a token every 500 ms
	a, b := limiterKey("a"), limiterKey("b")
	for i := range 2 {
		if ok, _ := l.allow(a); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow(a)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("third request at once: ok %v, wait %s; want refused, 500ms", ok, wait)
	}
	if ok, _ := l.allow(b); !ok {
		t.Fatal("another key is refused")
	}
	clock.advance(200 * time.Millisecond)
	if ok, wait := l.allow(a); ok || wait != 300*time.Millisecond {
		t.Fatalf("200ms later: ok %v, wait %s; want refused, 300ms", ok, wait)
	}
	clock.advance(300 * time.Millisecond)
	if ok, _ := l.allow(a); !ok {
		t.Fatal("a token later: refused")
	}
	if ok, _ := l.allow(a); ok {
		t.Fatal("the token was spent twice")
	}
	// Idle for long, the bucket holds its burst, no more.
	clock.advance(time.Hour)
	for i := range 2 {
		if ok, _ := l.allow(a); !ok {
			t.Fatalf("after an hour, request %d refused", i+1)
		}
	}
	if ok, _ := l.allow(a); ok {
		t.Fatal("after an hour the bucket held more than its burst")
	}
	// A clock that goes backwards gives no tokens.
	clock.advance(-time.Minute)
	if ok, _ := l.allow(a); ok {
		t.Fatal("a clock going backwards gave a token")
	}
}

func TestSlowRate(t *testing.T) {
	t.Parallel()
	l, clock := limiterAt(t, 0.25) // one request, then one every 4 s
	k := limiterKey("slow")
	if ok, _ := l.allow(k); !ok {
		t.Fatal("the first request is refused")
	}
	ok, wait := l.allow(k)
	if ok || wait != 4*time.Second || retryAfterSeconds(wait) != 4 {
		t.Fatalf("second request: ok %v, wait %s (Retry-After %d); want refused, 4s", ok, wait, retryAfterSeconds(wait))
	}
	clock.advance(3999 * time.Millisecond)
	if ok, _ := l.allow(k); ok {
		t.Fatal("a token before its time")
	}
	clock.advance(time.Millisecond)
	if ok, _ := l.allow(k); !ok {
		t.Fatal("refused after 4 s")
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		wait time.Duration
		want int64
	}{
		{0, 1}, {time.Nanosecond, 1}, {10 * time.Millisecond, 1}, {time.Second, 1},
		{time.Second + time.Nanosecond, 2}, {2500 * time.Millisecond, 3}, {10 * time.Second, 10},
	} {
		if got := retryAfterSeconds(tt.wait); got != tt.want {
			t.Errorf("retryAfterSeconds(%s) = %d, want %d", tt.wait, got, tt.want)
		}
	}
}

// TestLimiterMemoryIsBounded: idle buckets, full again, are swept; and
// the map never grows past maxBuckets, the stalest bucket giving way.
func TestLimiterMemoryIsBounded(t *testing.T) {
	t.Parallel()
	l, clock := limiterAt(t, 10) // full again 1 s after its last use
	l.sweepEvery = 10 * time.Second
	for i := range 1000 {
		l.allow(limiterKey(fmt.Sprint("idle-", i)))
	}
	if n := l.size(); n != 1000 {
		t.Fatalf("%d buckets, want 1000", n)
	}
	clock.advance(5 * time.Second) // full, but no sweep is due yet
	busy := limiterKey("busy")
	for range 10 {
		l.allow(busy)
	}
	if n := l.size(); n != 1001 {
		t.Fatalf("before the sweep: %d buckets, want 1001", n)
	}
	clock.advance(5 * time.Second)
	l.allow(busy) // the sweep is due: the idle buckets go, busy stays
	if n := l.size(); n != 1 {
		t.Fatalf("after the sweep: %d buckets, want 1 (the busy key's)", n)
	}
	// A swept key starts full, as it would have been.
	for i := range 10 {
		if ok, _ := l.allow(limiterKey("idle-0")); !ok {
			t.Fatalf("a swept key: request %d of its burst refused", i+1)
		}
	}

	// At the bound, with every bucket in use, the stalest gives way.
	l, clock = limiterAt(t, 1)
	l.maxBuckets = 3
	for _, k := range []string{"k1", "k2", "k3"} {
		l.allow(limiterKey(k))
		clock.advance(100 * time.Millisecond)
	}
	l.allow(limiterKey("k4"))
	if n := l.size(); n != 3 {
		t.Fatalf("%d buckets, want at most 3", n)
	}
	if ok, _ := l.allow(limiterKey("k3")); ok {
		t.Error("k3's bucket was lost (it was not the stalest)")
	}
	l.mu.Lock()
	_, k1 := l.buckets[limiterKey("k1")]
	l.mu.Unlock()
	if k1 {
		t.Error("k1, the stalest bucket, was kept")
	}
}

// TestLimiterConcurrent: many goroutines on one key at one instant get
// exactly the burst between them (run with -race).
func TestLimiterConcurrent(t *testing.T) {
	t.Parallel()
	l, clock := limiterAt(t, 20)
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Go(func() {
			for i := range 20 {
				key := limiterKey("shared")
				if i%2 == 1 {
					key = limiterKey(fmt.Sprint("own-", g, "-", i)) // other keys meanwhile
				}
				if ok, _ := l.allow(key); ok {
					if key == limiterKey("shared") {
						allowed.Add(1)
					}
				} else {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 20 || refused.Load() != 50*10-20 {
		t.Errorf("shared key: %d allowed, %d refused in all; want 20 (the burst), %d", allowed.Load(), refused.Load(), 50*10-20)
	}
	clock.advance(time.Second)
	if ok, _ := l.allow(limiterKey("shared")); !ok {
		t.Error("refused a second later")
	}
}

// limitedAPI serves the full API on the test database with a rate limit,
// logging to log (nil: discarded).
func limitedAPI(t *testing.T, rate float64, log io.Writer) (*Server, string) {
	t.Helper()
	pool := testdb.Pool(t, "handlers")
	if log == nil {
		log = io.Discard
	}
	s := New(Config{
		Pool: pool, App: app.New(pool, app.WithTxHook(projections.Inline)), Queries: projections.NewQueries(pool),
		Log:       slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RateLimit: rate,
	})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

type limitReply struct {
	status int
	header http.Header
	body   []byte
}

// getWithKey sends GET url with the API key; a failure to get an answer
// fails the test (from any goroutine) and gives the zero reply.
func getWithKey(t *testing.T, url, key string) limitReply {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Error(err)
		return limitReply{}
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return limitReply{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("GET %s: read the body: %v", url, err)
	}
	return limitReply{resp.StatusCode, resp.Header, b}
}

// TestRateLimitOverHTTP: with --rate-limit 1 (burst 1) a key's second
// request at once is 429 rate_limited with Retry-After and a problem body;
// another key of the same MSP is unaffected; after Retry-After the key
// works again; public routes and unknown keys are never limited.
func TestRateLimitOverHTTP(t *testing.T) {
	t.Parallel()
	_, base := limitedAPI(t, 1, nil)
	_, _, keys := keyUsers(t, 2)
	alice, bob := keys[0], keys[1]
	path := base + "/v1/catalog/products"

	// The first request spends the one token; the next ones at once find
	// none. (Sending until the first 429 keeps the test true on a machine
	// so slow that a second passes between two requests.)
	start := time.Now()
	var limited limitReply
	ok := 0
	for range 10 {
		r := getWithKey(t, path, alice)
		if r.status == http.StatusTooManyRequests {
			limited = r
			break
		}
		if r.status != http.StatusOK {
			t.Fatalf("GET as alice: %d %s", r.status, r.body)
		}
		ok++
	}
	if limited.status == 0 {
		t.Fatalf("10 requests at once with a limit of 1 a second, none refused")
	}
	if most := 1 + int(time.Since(start).Seconds()); ok > most {
		t.Errorf("%d requests allowed within %s, want at most %d", ok, time.Since(start), most)
	}
	if ct := limited.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("429 Content-Type %q", ct)
	}
	ra, err := strconv.Atoi(limited.header.Get("Retry-After"))
	if err != nil || ra != 1 {
		t.Errorf("Retry-After %q, want 1 (whole seconds, at least 1)", limited.header.Get("Retry-After"))
	}
	var p Problem
	if err := json.Unmarshal(limited.body, &p); err != nil {
		t.Fatalf("429 body: %v: %s", err, limited.body)
	}
	if p.Status != 429 || p.Code != "rate_limited" || p.Type != ProblemType("rate_limited") || p.Title != "Too Many Requests" ||
		!strings.Contains(p.Detail, "1 s") || p.Instance != "/v1/catalog/products" || p.RequestID != limited.header.Get("X-Request-ID") {
		t.Errorf("429 problem %+v", p)
	}

	// Bob has a bucket of his own.
	if r := getWithKey(t, path, bob); r.status != http.StatusOK {
		t.Errorf("bob, while alice is limited: %d %s", r.status, r.body)
	}
	// An unknown key is 401, not 429, and takes nothing from anybody.
	for range 3 {
		if r := getWithKey(t, path, alice+"-not"); r.status != http.StatusUnauthorized {
			t.Errorf("unknown key: %d %s, want 401", r.status, r.body)
		}
	}
	// Public routes have no limit.
	for _, pub := range []string{"/healthz", "/openapi.json", "/metrics"} {
		for range 3 {
			if r := getWithKey(t, base+pub, alice); r.status != http.StatusOK {
				t.Errorf("GET %s as the limited alice: %d", pub, r.status)
			}
		}
	}

	// Waiting Retry-After is enough.
	time.Sleep(time.Duration(ra) * time.Second)
	if r := getWithKey(t, path, alice); r.status != http.StatusOK {
		t.Errorf("alice after waiting Retry-After (%d s): %d %s", ra, r.status, r.body)
	}
}

// TestNoRateLimit: a limit of 0 never answers 429, even to a burst of
// concurrent requests of one key.
func TestNoRateLimit(t *testing.T) {
	t.Parallel()
	s, base := limitedAPI(t, 0, nil)
	if s.limiter() != nil {
		t.Fatal("a limit of 0 made a limiter")
	}
	_, _, keys := keyUsers(t, 1)
	var wg sync.WaitGroup
	var statuses sync.Map
	for range 8 {
		wg.Go(func() {
			for range 10 {
				r := getWithKey(t, base+"/v1/catalog/products", keys[0])
				statuses.Store(r.status, true)
			}
		})
	}
	wg.Wait()
	statuses.Range(func(k, _ any) bool {
		if k.(int) != http.StatusOK {
			t.Errorf("a request answered %d without a limit", k)
		}
		return true
	})
}

// TestRateLimitConcurrentRequests: concurrent requests of one key through
// the whole server (run with -race) are allowed no more than the limit
// lets through, and every refusal is a proper 429.
func TestRateLimitConcurrentRequests(t *testing.T) {
	t.Parallel()
	const rate = 5
	_, base := limitedAPI(t, rate, nil)
	_, _, keys := keyUsers(t, 1)
	var allowed, limited atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			for range 5 {
				r := getWithKey(t, base+"/v1/catalog/products", keys[0])
				switch {
				case r.status == http.StatusOK:
					allowed.Add(1)
				case r.status == http.StatusTooManyRequests && r.header.Get("Retry-After") != "":
					limited.Add(1)
				default:
					t.Errorf("%d %v %s", r.status, r.header, r.body)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if most := int64(rate + rate*elapsed.Seconds() + 1); allowed.Load() > most || allowed.Load() < rate {
		t.Errorf("%d of 50 allowed in %s, want %d to %d (burst %d, %d a second)", allowed.Load(), elapsed, rate, most, rate, rate)
	}
	if limited.Load() == 0 {
		t.Error("no request was limited")
	}
}

// TestOpenAPIDescribesRateLimiting: every authenticated operation lists a
// 429 with Retry-After, and no public one does.
func TestOpenAPIDescribesRateLimiting(t *testing.T) {
	t.Parallel()
	var spec struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Responses map[string]struct {
				Headers map[string]json.RawMessage `json:"headers"`
			} `json:"responses"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI, &spec); err != nil {
		t.Fatal(err)
	}
	tmr, ok := spec.Components.Responses["TooManyRequests"]
	if !ok || tmr.Headers["Retry-After"] == nil {
		t.Fatalf("components.responses.TooManyRequests with a Retry-After header is missing")
	}
	for _, rt := range New(Config{}).routes {
		var op struct {
			Responses map[string]struct {
				Ref string `json:"$ref"`
			} `json:"responses"`
		}
		raw := spec.Paths[rt.path][strings.ToLower(rt.method)]
		if raw == nil {
			continue // TestOpenAPIDescribesEveryRoute says so
		}
		if err := json.Unmarshal(raw, &op); err != nil {
			t.Fatalf("%s %s: %v", rt.method, rt.path, err)
		}
		r, has429 := op.Responses["429"]
		switch {
		case rt.public && has429:
			t.Errorf("%s %s is public (never limited) but describes a 429", rt.method, rt.path)
		case !rt.public && r.Ref != "#/components/responses/TooManyRequests":
			t.Errorf("%s %s: 429 is %+v, want the TooManyRequests response", rt.method, rt.path, r)
		}
	}
}
