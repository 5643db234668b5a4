package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/handlers"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/projections"
)

// The fixture's names, as the tests expect them back.
const (
	northwindName = "Northwind Managed Services"
	emailSecName  = "Email Security Cloud Gateway"
	archiveName   = "Cloud Archive"
	awarenessName = "Security Awareness Training"
)

var (
	// The catalog is shared by every test of the package (products are
	// global rows); it is imported once, so that parallel imports never
	// race on the same product rows.
	catalogOnce sync.Once
	catalogErr  error
)

// readFixture parses fixtures/import-example.json anew: every caller gets
// its own File to change.
func readFixture(t *testing.T) *importer.File {
	t.Helper()
	raw, err := os.ReadFile("../fixtures/import-example.json")
	if err != nil {
		t.Fatal(err)
	}
	f, err := importer.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func importCatalog(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	catalogOnce.Do(func() {
		f := readFixture(t)
		f.MSPs, f.Customers = nil, nil
		_, catalogErr = importer.Import(context.Background(), eventstore.New(pool), f, domain.SystemClock{})
	})
	if catalogErr != nil {
		t.Fatalf("import the catalog: %v", catalogErr)
	}
}

// env is one test's own world: its own copies of the fixture's MSPs (ids
// and API keys with a unique suffix), users and customers (ids with the
// suffix, names ending in a unique token), served over HTTP by a full API
// with a customers projector running.
type env struct {
	t      *testing.T
	pool   *pgxpool.Pool
	srv    *handlers.Server
	url    string
	client *http.Client

	sfx   string // suffix of every id and key of this test
	token string // last word of every customer name of this test

	northwind, tailspin string // MSP ids
	alex, sam, kim      string // API keys: u-alex and u-sam of Northwind, u-kim of Tailspin

	contoso, adatum, street, fabrikam string            // customer ids
	names                             map[string]string // customer id → name

	appOptions []app.Option // more options for the application layer
}

// withAppOptions configures this test's application layer.
func withAppOptions(opts ...app.Option) fixtureOption {
	return func(e *env, _ *importer.File) { e.appOptions = append(e.appOptions, opts...) }
}

// fixtureOption changes this test's copy of the fixture before it is
// imported (ids and names are already made unique).
type fixtureOption func(e *env, f *importer.File)

// withCustomers adds customers of Northwind with the given names (made
// unique with the test's token) and returns nothing; their ids are
// "cust-extra-<i>-<suffix>".
func withCustomers(names ...string) fixtureOption {
	return func(e *env, f *importer.File) {
		for i, n := range names {
			f.Customers = append(f.Customers, importer.Customer{
				ID: fmt.Sprintf("cust-extra-%d-%s", i, e.sfx), MSPID: e.northwind, Name: n + " " + e.token,
				Subscriptions: []importer.Subscription{{ProductCode: "EMAIL-SEC", TermType: "12 Month", Seats: 10 + i, UnitPrice: "3.50"}},
			})
		}
	}
}

// setup imports this test's copy of the fixture and serves the API on it.
func setup(t *testing.T, opts ...fixtureOption) *env {
	t.Helper()
	pool := testdb.Pool(t, "handlers")
	importCatalog(t, pool)

	sfx := strings.ReplaceAll(uuid.NewString(), "-", "")[:10]
	e := &env{t: t, pool: pool, sfx: sfx, token: "tk" + sfx, names: map[string]string{}}
	f := readFixture(t)
	f.Products = nil
	for i := range f.MSPs {
		m := &f.MSPs[i]
		m.ID += "-" + sfx
		for j := range m.Users {
			m.Users[j].APIKey += "-" + sfx
		}
	}
	e.northwind, e.tailspin = f.MSPs[0].ID, f.MSPs[1].ID
	e.alex, e.sam, e.kim = f.MSPs[0].Users[0].APIKey, f.MSPs[0].Users[1].APIKey, f.MSPs[1].Users[0].APIKey
	if f.MSPs[0].Users[0].ID != "u-alex" || f.MSPs[1].Users[0].ID != "u-kim" {
		t.Fatalf("the fixture's users moved: %+v", f.MSPs)
	}
	for i := range f.Customers {
		c := &f.Customers[i]
		c.ID += "-" + sfx
		c.MSPID += "-" + sfx
		c.Name += " " + e.token
	}
	e.contoso, e.adatum, e.street, e.fabrikam = f.Customers[0].ID, f.Customers[1].ID, f.Customers[2].ID, f.Customers[3].ID
	for _, o := range opts {
		o(e, f)
	}
	for _, c := range f.Customers {
		e.names[c.ID] = c.Name
	}
	if _, err := importer.Import(context.Background(), eventstore.New(pool), f, domain.SystemClock{}); err != nil {
		t.Fatalf("import: %v", err)
	}

	var done atomic.Bool
	t.Cleanup(func() { done.Store(true) }) // runs last: nothing logs to t after it
	log := slog.New(slog.NewTextHandler(testWriter{t: t, done: &done}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// The customers projector. Every test runs one; they share the
	// database, so one of them leads and projects everybody's customers.
	runner := projections.NewRunner(pool, projections.Customers{}, log)
	runner.Poll = 5 * time.Millisecond

	svc := app.New(pool, append([]app.Option{app.WithBatchHook(projections.InlineBatch), app.WithClock(domain.SystemClock{})}, e.appOptions...)...)
	e.srv = handlers.New(handlers.Config{
		Pool: pool, App: svc, Queries: projections.NewQueries(pool), Log: log,
		Ready: func(ctx context.Context) error { return pool.Ping(ctx) },
	})
	ts := httptest.NewServer(e.srv)
	t.Cleanup(ts.Close)
	e.url = ts.URL
	e.client = ts.Client()
	e.client.Timeout = 30 * time.Second

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- runner.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("projector: %v", err)
		}
	})

	// The customers are projected asynchronously: wait until every one of
	// them is listed, so that each test starts from a settled state.
	q := projections.NewQueries(pool)
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range f.Customers {
		for {
			_, err := q.Customer(context.Background(), c.MSPID, c.ID)
			if err == nil {
				break
			}
			if !errors.Is(err, domain.ErrNotFound) || time.Now().After(deadline) {
				t.Fatalf("customer %s is not projected: %v", c.ID, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return e
}

// testWriter logs the server's warnings and errors to the test, while it
// runs.
type testWriter struct {
	t    *testing.T
	done *atomic.Bool
}

func (w testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log("server: " + strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// reply is an HTTP answer: status, headers, raw body and, when the body is
// a JSON object, its decoding (numbers as json.Number).
type reply struct {
	method, path string
	status       int
	header       http.Header
	raw          []byte
	body         map[string]any
}

func (r reply) String() string {
	return fmt.Sprintf("%s %s → %d %s", r.method, r.path, r.status, bytes.TrimSpace(r.raw))
}

// do sends a request with the API key (none when key is ""). A body that
// is a string or []byte is sent as it is, anything else as JSON; a request
// with a body says Content-Type: application/json unless headers (name,
// value pairs) say otherwise.
func (e *env) do(method, path, key string, body any, headers ...string) reply {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if len(headers)%2 != 0 {
		e.t.Fatalf("headers must be name, value pairs: %q", headers)
	}
	for i := 0; i < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read the body: %v", method, path, err)
	}
	r := reply{method: method, path: path, status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(bytes.TrimSpace(raw)) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			e.t.Fatalf("%s %s: the body is not JSON: %v: %s", method, path, err, raw)
		}
		r.body, _ = v.(map[string]any)
	}
	return r
}

// must sends a request as u-alex and fails the test unless it answers with
// the status.
func (e *env) must(status int, method, path string, body any, headers ...string) reply {
	e.t.Helper()
	r := e.do(method, path, e.alex, body, headers...)
	if r.status != status {
		e.t.Fatalf("want %d: %s", status, r)
	}
	return r
}

// wantProblem checks that r is a problem with the status and code, with
// the request id the response carries.
func (e *env) wantProblem(r reply, status int, code string) {
	e.t.Helper()
	if r.status != status {
		e.t.Errorf("want %d %s: %s", status, code, r)
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		e.t.Errorf("%s %s: Content-Type %q, want application/problem+json", r.method, r.path, ct)
	}
	if r.body == nil {
		e.t.Errorf("%s %s: the problem is not a JSON object: %s", r.method, r.path, r.raw)
		return
	}
	if got := str(r.body["code"]); got != code {
		e.t.Errorf("%s: code %q, want %q", r, got, code)
	}
	if got := str(r.body["status"]); got != strconv.Itoa(status) {
		e.t.Errorf("%s: status member %q, want %d", r, got, status)
	}
	if str(r.body["type"]) == "" || str(r.body["title"]) == "" || str(r.body["detail"]) == "" {
		e.t.Errorf("%s: a problem needs type, title and detail", r)
	}
	if id := r.header.Get("X-Request-ID"); id == "" || str(r.body["request_id"]) != id {
		e.t.Errorf("%s: request_id %q, X-Request-ID %q", r, str(r.body["request_id"]), id)
	}
}

// str renders a decoded JSON value: strings as they are, numbers as
// written, null as "<nil>", anything else as JSON.
func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case nil:
		return "<nil>"
	case bool:
		return strconv.FormatBool(v)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// dig walks a decoded JSON value by object keys (string) and array
// indices (int).
func dig(v any, path ...any) (any, error) {
	for i, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%v: not an object", path[:i])
			}
			if v, ok = m[p]; !ok {
				return nil, fmt.Errorf("%v: no member %q", path[:i], p)
			}
		case int:
			a, ok := v.([]any)
			if !ok || p >= len(a) {
				return nil, fmt.Errorf("%v: no element %d", path[:i], p)
			}
			v = a[p]
		}
	}
	return v, nil
}

// get is dig that fails the test.
func (e *env) get(v any, path ...any) any {
	e.t.Helper()
	got, err := dig(v, path...)
	if err != nil {
		e.t.Fatalf("%v in %s", err, str(v))
	}
	return got
}

// list is get of an array.
func (e *env) list(v any, path ...any) []any {
	e.t.Helper()
	got := e.get(v, path...)
	a, ok := got.([]any)
	if !ok {
		e.t.Fatalf("%v is not an array but %s", path, str(got))
	}
	return a
}

// wantFields checks members of a decoded object, each rendered by str.
func (e *env) wantFields(what string, v any, want map[string]string) {
	e.t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		e.t.Errorf("%s: not an object: %s", what, str(v))
		return
	}
	for k, w := range want {
		got, present := m[k]
		if !present {
			e.t.Errorf("%s: no member %q in %s", what, k, str(v))
			continue
		}
		if str(got) != w {
			e.t.Errorf("%s: %s = %s, want %s", what, k, str(got), w)
		}
	}
}

func quotePath(id string, rest ...string) string {
	return "/v1/change-quotes/" + id + strings.Join(rest, "")
}

// open opens a change quote on one of Northwind's customers as u-alex.
func (e *env) open(customer string) string {
	e.t.Helper()
	r := e.must(http.StatusCreated, "POST", "/v1/customers/"+customer+"/change-quotes", nil)
	id := str(r.body["quote_id"])
	if _, err := uuid.Parse(id); err != nil {
		e.t.Fatalf("open: quote_id %q: %v", id, err)
	}
	return id
}

// events reads a quote's events as u-alex.
func (e *env) events(quote string) []any {
	e.t.Helper()
	r := e.must(http.StatusOK, "GET", quotePath(quote, "/events"), nil)
	return e.list(r.body, "events")
}

// eventCount is how many events a quote has.
func (e *env) eventCount(quote string) int {
	e.t.Helper()
	return len(e.events(quote))
}

// eventTypes lists the types of a quote's events.
func (e *env) eventTypes(quote string) []string {
	e.t.Helper()
	var out []string
	for _, ev := range e.events(quote) {
		out = append(out, str(e.get(ev, "type")))
	}
	return out
}

// quotes lists a customer's quotes as u-alex.
func (e *env) quotes(customer, query string) []any {
	e.t.Helper()
	r := e.must(http.StatusOK, "GET", "/v1/customers/"+customer+"/change-quotes"+query, nil)
	return e.list(r.body, "quotes")
}

// raised opens a quote on Contoso with EMAIL-SEC raised to 700 seats.
func (e *env) raised() string {
	e.t.Helper()
	id := e.open(e.contoso)
	e.must(http.StatusOK, "PUT", quotePath(id, "/seats"), map[string]any{"product_code": "EMAIL-SEC", "total_seats": 700})
	return id
}

// ready makes a quote reviewed and acknowledged, ready to submit.
func (e *env) ready(id string) {
	e.t.Helper()
	e.must(http.StatusOK, "POST", quotePath(id, "/review"), nil)
	e.must(http.StatusOK, "POST", quotePath(id, "/acknowledgements"), acks(true, true))
}

func acks(msa, authorized bool) map[string]any {
	return map[string]any{"msa_governs_order": msa, "authorized_to_order": authorized}
}

// customer reads one of Northwind's customers as u-alex.
func (e *env) customer(id string) map[string]any {
	e.t.Helper()
	return e.must(http.StatusOK, "GET", "/v1/customers/"+id, nil).body
}
