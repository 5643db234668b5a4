package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	neturl "net/url"
	"regexp"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/projections"
	"github.com/upsell-dev/upsell/relay"
)

// outageDB takes a test database away from its clients and gives it back,
// without touching the server: ALLOW_CONNECTIONS false refuses new
// sessions, pg_terminate_backend ends the open ones. Only the test's own
// database is touched, and the cleanup always allows connections again.
type outageDB struct {
	name  string    // the database
	admin *pgx.Conn // on the server's own database, never terminated here
}

func newOutageDB(t *testing.T, url string) *outageDB {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if !strings.HasPrefix(name, "upsell_test_") {
		t.Fatalf("refusing to take %q away: not a test database", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, testdb.ServerURL())
	if err != nil {
		t.Fatalf("PostgreSQL is not reachable at the test server: %v", err)
	}
	o := &outageDB{name: name, admin: admin}
	t.Cleanup(func() {
		// On a connection of its own, whatever became of the test's.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = admin.Close(ctx)
		again, err := pgx.Connect(ctx, testdb.ServerURL())
		if err == nil {
			_, err = again.Exec(ctx, allowSQL(name, true))
			_ = again.Close(ctx)
		}
		if err != nil {
			t.Errorf("allow connections to %s again: %v", name, err)
		}
	})
	return o
}

func allowSQL(database string, yes bool) string {
	return fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", pgx.Identifier{database}.Sanitize(), yes)
}

func (o *outageDB) allow(ctx context.Context, yes bool) error {
	_, err := o.admin.Exec(ctx, allowSQL(o.name, yes))
	return err
}

// terminate ends every session on the database and returns how many
// there were.
func (o *outageDB) terminate(ctx context.Context) (int, error) {
	var n int
	err := o.admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, o.name).Scan(&n)
	return n, err
}

// sessions counts the sessions on the database.
func (o *outageDB) sessions(ctx context.Context) (int, error) {
	var n int
	err := o.admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, o.name).Scan(&n)
	return n, err
}

// outageRequest is one request of the load, as the client saw it.
type outageRequest struct {
	what       string // method and route
	want       int    // the status when the database is there
	start, end time.Time
	status     int
	code       string // the problem's code
	ctype      string
	body       string
	err        error
}

func (r *outageRequest) ok() bool { return r.err == nil && r.status == r.want }

func (r *outageRequest) String() string {
	if r.err != nil {
		return fmt.Sprintf("%s: %v after %s", r.what, r.err, r.end.Sub(r.start).Round(time.Millisecond))
	}
	return fmt.Sprintf("%s: %d %s after %s: %.300s", r.what, r.status, r.code, r.end.Sub(r.start).Round(time.Millisecond), r.body)
}

// outageLoad is clients driving the API as staff do, every request
// recorded.
type outageLoad struct {
	base  string
	http  *http.Client
	seats int // EMAIL-SEC seats of Contoso before the test

	mu       sync.Mutex
	requests []*outageRequest
	okCount  atomic.Int64
}

func (l *outageLoad) send(method, path, route, body string, want int) *outageRequest {
	r := &outageRequest{what: method + " " + route, want: want, start: time.Now()}
	defer func() {
		r.end = time.Now()
		if r.ok() {
			l.okCount.Add(1)
		}
		l.mu.Lock()
		l.requests = append(l.requests, r)
		l.mu.Unlock()
	}()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, l.base+path, rd)
	if err != nil {
		r.err = err
		return r
	}
	req.Header.Set("Authorization", "Bearer "+alexKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.http.Do(req)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r.status, r.ctype, r.body, r.err = resp.StatusCode, resp.Header.Get("Content-Type"), string(b), err
	if strings.HasPrefix(r.ctype, "application/problem+json") {
		var p struct{ Code string }
		if json.Unmarshal(b, &p) == nil {
			r.code = p.Code
		}
	}
	return r
}

var quoteIDField = regexp.MustCompile(`"quote_id":"([0-9a-f-]{36})"`)

// worker sends the staff flow until stop is closed: open a quote, raise
// its seats, preview it, list customers, and the probes.
func (l *outageLoad) worker(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		open := l.send("POST", "/v1/customers/cust-contoso/change-quotes", "/v1/customers/{id}/change-quotes", "", http.StatusCreated)
		if m := quoteIDField.FindStringSubmatch(open.body); open.ok() && m != nil {
			q := "/v1/change-quotes/" + m[1]
			l.send("PUT", q+"/seats", "/v1/change-quotes/{id}/seats",
				fmt.Sprintf(`{"product_code":"EMAIL-SEC","total_seats":%d}`, l.seats+1+rand.IntN(50)), http.StatusOK)
			l.send("GET", q+"/preview", "/v1/change-quotes/{id}/preview", "", http.StatusOK)
		}
		l.send("GET", "/v1/customers?q=contoso", "/v1/customers", "", http.StatusOK)
		l.send("GET", "/v1/customers/cust-contoso", "/v1/customers/{id}", "", http.StatusOK)
		l.send("GET", "/readyz", "/readyz", "", http.StatusOK)
		l.send("GET", "/healthz", "/healthz", "", http.StatusOK)
	}
}

func (l *outageLoad) all() []*outageRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.requests)
}

// waitOK waits until n more requests than now have succeeded.
func (l *outageLoad) waitOK(t *testing.T, n int64, within time.Duration, log *syncBuffer) {
	t.Helper()
	target := l.okCount.Load() + n
	deadline := time.Now().Add(within)
	for l.okCount.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d requests succeeded within %s; log:\n%s", n, within, log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitCaughtUp waits until each named follower of the log (projection or
// relay) has applied every event, and returns when each first was (in the
// order of names). If one does not, the failure shows where every
// goroutine waits (serve runs in this process): a follower that hangs on a
// database call shows there.
func waitCaughtUp(t *testing.T, pool *pgxpool.Pool, log *syncBuffer, names ...string) []time.Time {
	t.Helper()
	at := make([]time.Time, len(names))
	deadline := time.Now().Add(relayWait)
	for {
		waiting := 0
		for i, name := range names {
			if !at[i].IsZero() {
				continue
			}
			lag, err := projections.Lag(context.Background(), pool, name)
			if err == nil && lag.Events == 0 {
				at[i] = time.Now()
				continue
			}
			waiting++
			if time.Now().After(deadline) {
				var stacks strings.Builder
				_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
				t.Fatalf("%s has not caught up within %s (lag %+v, %v); log:\n%s\ngoroutines:\n%s", name, relayWait, lag, err, log.String(), stacks.String())
			}
		}
		if waiting == 0 {
			return at
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outageRun is a serve under load for an outage test.
type outageRun struct {
	t              *testing.T
	url            string        // the database, directly
	pool           *pgxpool.Pool // on url, for the test's own checks
	srv            *served
	load           *outageLoad
	stopLoad       func()
	requestTimeout time.Duration
	bound          time.Duration // no answer may take longer
}

// startOutageRun serves the database at url through serveURL (the same
// database, maybe by another way) with the request timeout, waits until
// its followers are current, and starts six clients.
func startOutageRun(t *testing.T, url, serveURL string, pool *pgxpool.Pool, requestTimeout time.Duration) *outageRun {
	t.Helper()
	o := &outageRun{t: t, url: url, pool: pool, requestTimeout: requestTimeout,
		bound: requestTimeout + 1500*time.Millisecond} // the timeout, and a margin for -race and a busy machine
	o.srv = startServeWith(t, serveURL, "--request-timeout", requestTimeout.String())
	waitCaughtUp(t, pool, o.srv.stderr, "customers", "relay.postgres")

	var seats int
	status, _, body := newAPIClient(t, o.srv.base).do("GET", "/v1/customers/cust-contoso", alexKey, "")
	var customer struct {
		Lines []struct {
			ProductCode string `json:"product_code"`
			Seats       int    `json:"seats"`
		} `json:"lines"`
	}
	if status != 200 || json.Unmarshal(body, &customer) != nil {
		t.Fatalf("GET /v1/customers/cust-contoso: %d %s", status, body)
	}
	for _, l := range customer.Lines {
		if l.ProductCode == "EMAIL-SEC" {
			seats = l.Seats
		}
	}

	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	o.load = &outageLoad{base: o.srv.base, http: &http.Client{Transport: tr, Timeout: time.Minute}, seats: seats}
	stop := make(chan struct{})
	var workers sync.WaitGroup
	o.stopLoad = sync.OnceFunc(func() { close(stop); workers.Wait() })
	t.Cleanup(o.stopLoad)
	for range 6 {
		workers.Go(func() { o.load.worker(stop) })
	}
	o.load.waitOK(t, 60, 30*time.Second, o.srv.stderr)
	return o
}

// outageWindow is when the database was away: from began (the first step)
// and fully from start, until end; recovered is when the first command
// after end was answered.
type outageWindow struct {
	began, start, end, recovered time.Time
}

// awaitRecovery lets the load go on until a command succeeds after the
// database came back at end, and 60 more requests after that; then it
// stops the load and returns when the first command was answered.
func (o *outageRun) awaitRecovery(end time.Time) time.Time {
	t := o.t
	t.Helper()
	var recovered time.Time
	for deadline := time.Now().Add(30 * time.Second); recovered.IsZero(); {
		for _, r := range o.load.all() {
			if r.what == "POST /v1/customers/{id}/change-quotes" && r.ok() && r.start.After(end) &&
				(recovered.IsZero() || r.end.Before(recovered)) {
				recovered = r.end
			}
		}
		if recovered.IsZero() {
			if time.Now().After(deadline) {
				t.Fatalf("no command succeeded within 30 s of the database's return; log:\n%s", o.srv.stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	o.load.waitOK(t, 60, 30*time.Second, o.srv.stderr)
	o.stopLoad()
	return recovered
}

// check judges every answer of the load against the outage: before it
// the expected status; within it 503 database_unavailable (not_ready for
// /readyz) as a problem, /healthz 200; straddling it either; after the
// recovery the expected status again, but for at most staleAfter 503s.
// Always: an answer, within the bound, never a 500, no internals.
func (o *outageRun) check(w outageWindow, staleAfter, minDuring int) {
	t := o.t
	t.Helper()
	var before, during, overlapping, after []*outageRequest
	var maxDuring, maxAll time.Duration
	statuses := map[string]int{}
	var problems, lateFailures []string
	for _, r := range o.load.all() {
		d := r.end.Sub(r.start)
		maxAll = max(maxAll, d)
		switch {
		case r.end.Before(w.began):
			before = append(before, r)
		case !r.start.Before(w.start) && !r.end.After(w.end):
			during = append(during, r)
			maxDuring = max(maxDuring, d)
			statuses[fmt.Sprintf("%s → %d %s", r.what, r.status, r.code)]++
		case r.start.After(w.recovered):
			after = append(after, r)
		default:
			overlapping = append(overlapping, r)
		}
		if r.err != nil {
			problems = append(problems, "no answer: "+r.String())
			continue
		}
		if d > o.bound {
			problems = append(problems, fmt.Sprintf("answered after %s, beyond %s: %s", d.Round(time.Millisecond), o.bound, r))
		}
		if r.status == http.StatusInternalServerError {
			problems = append(problems, "a 500: "+r.String())
		}
		if strings.Contains(r.body, "goroutine ") || strings.Contains(r.body, ".go:") || strings.Contains(r.body, "SQLSTATE") ||
			strings.Contains(r.body, "pgx") || strings.Contains(r.body, "127.0.0.1") {
			problems = append(problems, "internals in the body: "+r.String())
		}
		if r.ok() {
			continue
		}
		wantCode := "database_unavailable"
		if r.what == "GET /readyz" {
			wantCode = "not_ready"
		}
		switch {
		case r.status != http.StatusServiceUnavailable || r.code != wantCode || r.ctype != "application/problem+json":
			problems = append(problems, fmt.Sprintf("want %d or 503 %s (problem+json): %s (Content-Type %q)", r.want, wantCode, r, r.ctype))
		case r.end.Before(w.began):
			problems = append(problems, "a 503 before the outage: "+r.String())
		case r.start.After(w.recovered):
			lateFailures = append(lateFailures, fmt.Sprintf("%s, %s after the first recovered command", r, r.start.Sub(w.recovered).Round(time.Millisecond)))
		}
	}
	for _, r := range during {
		if r.what == "GET /healthz" {
			if r.status != http.StatusOK {
				problems = append(problems, "/healthz needs no database: "+r.String())
			}
		} else if r.status != http.StatusServiceUnavailable {
			problems = append(problems, "not a 503 while the database was away: "+r.String())
		}
	}
	if len(lateFailures) > staleAfter {
		for _, f := range lateFailures {
			problems = append(problems, "a 503 after the service had recovered: "+f)
		}
	}
	reportSomeOutage(t, problems)

	keys := make([]string, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lines []string
	for _, k := range keys {
		lines = append(lines, fmt.Sprintf("  %5d  %s", statuses[k], k))
	}
	t.Logf("outage of %s; %d requests before, %d within, %d straddling, %d after recovery (%d of them 503, %d allowed)",
		w.end.Sub(w.start).Round(time.Millisecond), len(before), len(during), len(overlapping), len(after), len(lateFailures), staleAfter)
	t.Logf("slowest answer within the outage %s, overall %s (request timeout %s, bound %s); first command answered %s after the database's return",
		maxDuring.Round(time.Millisecond), maxAll.Round(time.Millisecond), o.requestTimeout, o.bound, w.recovered.Sub(w.end).Round(time.Millisecond))
	t.Logf("answers within the outage:\n%s", strings.Join(lines, "\n"))
	if len(during) < minDuring {
		t.Errorf("only %d requests fell within the outage, want %d at least: it tested little", len(during), minDuring)
	}
	if len(after) < 20 {
		t.Errorf("only %d requests after the recovery", len(after))
	}
}

// checkBack checks that the same serve is ready again, and that the named
// followers of the log (its projector, its relay) follow it again: a
// command now, then each follower at the head, led, as `upsell status`
// says.
func (o *outageRun) checkBack(end time.Time, followers ...string) {
	t := o.t
	t.Helper()
	api := newAPIClient(t, o.srv.base)
	if status, _, body := api.do("GET", "/readyz", "", ""); status != 200 {
		t.Errorf("GET /readyz after the outage: %d %s", status, body)
	}
	if status, _, body := api.do("POST", "/v1/customers/cust-contoso/change-quotes", alexKey, ""); status != 201 {
		t.Fatalf("a command after the outage: %d %s", status, body)
	}
	caughtUp := waitCaughtUp(t, o.pool, o.srv.stderr, followers...)
	for i, name := range followers {
		t.Logf("%s at the head %s after the database's return", name, caughtUp[i].Sub(end).Round(time.Millisecond))
	}
	// How the followers got there: the restarts serve logged.
	for line := range strings.Lines(o.srv.stderr.String()) {
		if strings.Contains(line, "projector stopped") {
			t.Logf("serve: %.400s", strings.TrimSpace(line))
		}
	}
	code, out, errOut := upsell(t, o.url, "status", "--json")
	var st statusReport
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status --json: code %d %s %s", code, out, errOut)
	}
	for _, name := range followers {
		i := slices.IndexFunc(st.Followers, func(f followerStatus) bool { return f.Name == name })
		if i < 0 || !st.Followers[i].LeaderRunning || st.Followers[i].LagEvents != 0 {
			t.Errorf("status after the outage: %s is not led and current: %s", name, out)
		}
	}
	select {
	case code := <-o.srv.exit:
		o.srv.exit <- code
		t.Fatalf("serve ended (%d) during the test; log:\n%s", code, o.srv.stderr.String())
	default:
	}
	if strings.Contains(o.srv.stderr.String(), "panic") {
		t.Errorf("serve logged a panic:\n%s", o.srv.stderr.String())
	}
}

// stopWithin is how long serve may take to stop after the test: the load
// is over and the followers are current, so nothing is in flight; but the
// pool's Close waits for pgx to be done with each connection it gave up
// on, which for a silent one is 15 s after that (pgconn's asyncClose: a
// cancel request, then draining the socket until the server closes it),
// and the relay's publish gives up only a few seconds before it is current
// again. 15 s, and a margin for -race and a busy machine; still below
// startServeWith's 30 s.
const stopWithin = 20 * time.Second

// stop stops serve as Ctrl-C does and checks that it returns 0 within
// stopWithin; if it hangs, the failure shows where.
func (o *outageRun) stop() {
	t := o.t
	t.Helper()
	start := time.Now()
	o.srv.cancel()
	select {
	case code := <-o.srv.exit:
		o.srv.exit <- code // for startServeWith's cleanup
		t.Logf("serve stopped %s after it was told to", time.Since(start).Round(time.Millisecond))
		if code != 0 {
			t.Errorf("serve returned %d on stopping; log:\n%s", code, o.srv.stderr.String())
		}
	case <-time.After(stopWithin):
		var stacks strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("serve did not stop within %s; log:\n%s\ngoroutines:\n%s", stopWithin, o.srv.stderr.String(), stacks.String())
	}
}

// TestServeSurvivesDatabaseOutage: with clients driving the API, the
// service's database goes away for a few seconds (new sessions refused,
// open ones terminated again and again) and comes back. While it is away
// every request that needs it is answered 503 database_unavailable (or
// /readyz's not_ready) with a problem body, within the request timeout,
// never 500 and never a hang; /healthz stays 200. Once it is back, the
// same serve (no restart) answers commands again, /readyz is 200, and the
// customers projector and the relay catch up with the log, new events
// included, their leaders running again.
func TestServeSurvivesDatabaseOutage(t *testing.T) {
	t.Parallel()
	url, pool := storyDB(t)
	outage := newOutageDB(t, url)
	const outageFor = 4 * time.Second
	// The request timeout: short, to see it bound the answers, yet well
	// above what a request takes under -race on a busy machine.
	o := startOutageRun(t, url, url, pool, 3*time.Second)

	// The outage: it begins with the refusal of new sessions, and is
	// complete once no session is left.
	ctx := context.Background()
	var w outageWindow
	w.began = time.Now()
	if err := outage.allow(ctx, false); err != nil {
		t.Fatal(err)
	}
	terminated := 0
	for deadline := time.Now().Add(10 * time.Second); ; {
		n, err := outage.terminate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		terminated += n
		left, err := outage.sessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			w.start = time.Now() // from now on no session of the service is left
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still on %s 10 s after terminating them", left, outage.name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for time.Since(w.start) < outageFor {
		n, err := outage.terminate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		terminated += n
		time.Sleep(50 * time.Millisecond)
	}
	if err := outage.allow(ctx, true); err != nil {
		t.Fatal(err)
	}
	w.end = time.Now()
	t.Logf("%d sessions terminated", terminated)

	w.recovered = o.awaitRecovery(w.end)
	o.check(w, 0, 20)
	o.checkBack(w.end, "customers", "relay.postgres")
	o.stop()
}

// TestServeSurvivesAnUnansweringDatabase: the service reaches PostgreSQL
// through a proxy that turns into a black hole for ten seconds: every
// connection, open or new, stops answering without being closed, as
// across a network partition. It does so as the relay publishes, its
// INSERT into the SQL topic swallowed: the publish that watermill-sql
// would have let wait forever. Requests must not wait for the database:
// each is answered 503 once its timeout is over. When the proxy carries
// connections again, the same serve recovers by itself: requests once pgx
// has let go of the silent connections (it gives each 15 s to close
// cleanly, and they hold their places in the pool meanwhile), the
// customers projector, whose connection went silent mid-work, once its
// batch timed out (projections.DefaultCallTimeout; 10 s if it was caught
// committing) and it led again on a new connection, and the relay
// likewise, once its publish timed out (relay.PublishTimeout, then 5 s for
// the rollback on its silent connection) and it led again. Then serve
// stops in bounded time.
func TestServeSurvivesAnUnansweringDatabase(t *testing.T) {
	t.Parallel()
	url, pool := storyDB(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newHoleProxy(t, u.Host)
	u.Host = proxy.addr()
	const holeFor = 10 * time.Second
	o := startOutageRun(t, url, u.String(), pool, 3*time.Second)
	// Cleanups run last first: the proxy's connections end before serve is
	// stopped, so that nothing of serve waits on a silent one then.
	t.Cleanup(proxy.close)

	// The load makes events all the time, and the relay publishes them:
	// the black hole begins with the next publish, which never reaches
	// PostgreSQL (its messages' metadata is the mark).
	var w outageWindow
	select {
	case w.start = <-proxy.holeOn(relay.MetaSpecVersion):
	case <-time.After(20 * time.Second):
		t.Fatalf("the relay published nothing within 20 s under load; log:\n%s", o.srv.stderr.String())
	}
	w.began = w.start
	time.Sleep(holeFor - time.Since(w.start)) // the outage itself: the load runs against it
	proxy.restore()
	w.end = time.Now()

	w.recovered = o.awaitRecovery(w.end)
	// The pool's connections that went silent are dropped one by one as
	// they are used (or pinged): a few requests may still meet one.
	o.check(w, 8, 10)
	// The relay too: its publish caught by the black hole waits on its
	// silent connection until relay.PublishTimeout (watermill-sql runs its
	// INSERT without a deadline of its own; relay/transport.go bounds it),
	// then the relay leads again on a new connection.
	o.checkBack(w.end, "customers", "relay.postgres")
	if !slices.ContainsFunc(slices.Collect(strings.Lines(o.srv.stderr.String())), func(line string) bool {
		return strings.Contains(line, "projection=relay.postgres") && strings.Contains(line, ": publish ")
	}) {
		t.Errorf("the relay logged no failed publish: the black hole did not catch its INSERT; log:\n%s", o.srv.stderr.String())
	}
	// With the proxy still up, and the silent connections still silent:
	// serve must let go of all of them by itself.
	o.stop()
}

// reportSomeOutage reports the first problems and how many there were.
func reportSomeOutage(t *testing.T, problems []string) {
	t.Helper()
	for i, p := range problems {
		if i == 15 {
			t.Errorf("... and %d more", len(problems)-i)
			break
		}
		t.Error(p)
	}
}

// holeProxy is a TCP proxy to PostgreSQL that can turn into a black hole:
// the connections it carries stop answering without being closed (the
// service sees a database that no longer answers, as across a network
// partition or after a failover behind a proxy), while PostgreSQL sees
// them closed and ends their sessions. New connections then get no answer
// either, until restore. It holes when a client sends a mark (holeOn).
type holeProxy struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	holed  bool
	pairs  map[*proxyPair]struct{}
	mark   []byte           // holeOn's: hole when a client sends it
	holeAt chan<- time.Time // when that was
	wg     sync.WaitGroup
}

type proxyPair struct {
	client, server net.Conn
	dead           atomic.Bool // holed: nothing goes through any more
}

func newHoleProxy(t *testing.T, upstream string) *holeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holeProxy{ln: ln, upstream: upstream, pairs: map[*proxyPair]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *holeProxy) addr() string { return p.ln.Addr().String() }

func (p *holeProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		pair := &proxyPair{client: c}
		p.mu.Lock()
		p.pairs[pair] = struct{}{}
		holed := p.holed
		p.mu.Unlock()
		p.wg.Go(func() { p.carry(pair, holed) })
	}
}

// carry forwards one connection both ways until either side closes it,
// or only swallows what the client sends once the pair is dead.
func (p *holeProxy) carry(pair *proxyPair, holed bool) {
	defer pair.client.Close()
	if holed {
		pair.dead.Store(true)
	} else if s, err := net.DialTimeout("tcp", p.upstream, 5*time.Second); err == nil {
		p.mu.Lock()
		pair.server = s
		if p.holed {
			pair.dead.Store(true)
			_ = s.Close()
		}
		p.mu.Unlock()
		p.wg.Go(func() {
			_, _ = io.Copy(pair.client, s)
			if !pair.dead.Load() {
				_ = pair.client.Close() // PostgreSQL closed it: pass that on
			}
		})
	} else {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := pair.client.Read(buf)
		if err != nil {
			if pair.server != nil {
				_ = pair.server.Close()
			}
			p.mu.Lock()
			delete(p.pairs, pair)
			p.mu.Unlock()
			return
		}
		if pair.dead.Load() || p.holeIfMarked(buf[:n]) {
			continue
		}
		if _, err := pair.server.Write(buf[:n]); err != nil {
			pair.dead.Store(true) // PostgreSQL went away; the copy above closes the client
		}
	}
}

// holeOn holes the proxy as soon as a client sends mark (within one read),
// that read swallowed too; the channel tells when.
func (p *holeProxy) holeOn(mark string) <-chan time.Time {
	at := make(chan time.Time, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mark, p.holeAt = []byte(mark), at
	return at
}

// holeIfMarked holes the proxy if b carries holeOn's mark, and says so.
func (p *holeProxy) holeIfMarked(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mark == nil || !bytes.Contains(b, p.mark) {
		return false
	}
	p.holeLocked()
	p.holeAt <- time.Now()
	p.mark, p.holeAt = nil, nil
	return true
}

// holeLocked stops every connection and every new one from answering.
func (p *holeProxy) holeLocked() {
	p.holed = true
	for pair := range p.pairs {
		pair.dead.Store(true)
		if pair.server != nil {
			_ = pair.server.Close()
		}
	}
}

// restore carries new connections again; the holed ones stay silent.
func (p *holeProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holed = false
}

func (p *holeProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for pair := range p.pairs {
		pair.dead.Store(true)
		_ = pair.client.Close()
		if pair.server != nil {
			_ = pair.server.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}
