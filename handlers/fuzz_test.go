package handlers_test

// Fuzz tests of the HTTP API: every fuzz input is one request to the real
// server (httptest) on a real database of its own, and the properties are
// those of API.md: no request is answered with a 5xx, a 4xx is an RFC 9457
// problem with a known code, and a request that is not answered 2xx
// appends nothing to the event log.
//
// A fuzzing run starts several processes (the coordinator and its
// workers); each builds its own world in a scratch database
// upsell_fuzz_<unix time>_<random> (see newFuzzWorld), so that they never
// wait on each other's locks and so that the whole log of the database can
// be counted before and after each request.
//
//	go test -run '^$' -fuzz '^FuzzCommand$' -fuzztime 2m ./handlers/
//	go test -run '^$' -fuzz '^FuzzQuery$' -fuzztime 2m ./handlers/

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/handlers"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/migrations"
	"github.com/upsell-dev/upsell/projections"
)

// problemCodes is every (status, code) pair API.md and the handlers give:
// a 4xx with another pair is a finding. The domain's codes take their
// status from handlers.StatusFor, the one table of the API.
var problemCodes = func() map[int]map[string]bool {
	m := map[int]map[string]bool{
		400: {"malformed_json": true, "invalid_field": true, "unknown_field": true, "missing_field": true,
			"invalid_parameter": true, "invalid_cursor": true, "invalid_if_match": true, "invalid_idempotency_key": true},
		401: {"unauthorized": true},
		404: {"not_found": true},
		405: {"method_not_allowed": true},
		409: {"version_conflict": true, "not_reviewed": true}, // not_reviewed: the summary before a review
		412: {"precondition_failed": true},
		413: {"body_too_large": true},
		415: {"unsupported_media_type": true},
		422: {"idempotency_key_reused": true},
	}
	for _, c := range []domain.Code{
		domain.CodeNotFound, domain.CodeQuoteClosed, domain.CodeBaselineChanged, domain.CodeSeatsDecrease,
		domain.CodeInvalidSeats, domain.CodeUnknownProduct, domain.CodeUnknownTermType, domain.CodeUnknownCurrency,
		domain.CodeCurrencyMismatch, domain.CodeProductAlreadyPresent, domain.CodeProductNotOnSubscription,
		domain.CodeProductNotAdded, domain.CodeNothingToReview, domain.CodeNotReviewed,
		domain.CodeAcknowledgementsMissing, domain.CodeInvalidCustomer, domain.CodeInvalidProduct,
	} {
		status, code := handlers.StatusFor(&domain.Error{Code: c, Detail: "x"})
		if m[status] == nil {
			m[status] = map[string]bool{}
		}
		m[status][code] = true
	}
	return m
}()

// fuzzWorld is one process's API on a scratch database holding the import
// fixture as it is (ids and keys unchanged), and quotes in the states the
// fuzz inputs pick from.
type fuzzWorld struct {
	e    *env // e.t is nil: use e.on(t) or the methods of fuzzWorld
	logs *logTail

	mu    sync.Mutex
	slots []*quoteSlot
}

// quoteSlot is a quote a fuzz input can aim at, with the recipe that made
// it; the quote is made anew once it is closed or its stream grew long.
type quoteSlot struct {
	name   string
	recipe func(w *fuzzWorld, tb testing.TB) string
	id     string
	writes int  // 2xx commands aimed at it since it was made
	closed bool // submitted or cancelled: make it anew
}

// newFuzzWorld builds the world for one fuzz target of this process.
func newFuzzWorld(f *testing.F) *fuzzWorld {
	f.Helper()
	ctx := context.Background()
	pool := scratchPool(f)

	raw, err := os.ReadFile("../fixtures/import-example.json")
	if err != nil {
		f.Fatal(err)
	}
	file, err := importer.Parse(bytes.NewReader(raw))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := importer.Import(ctx, eventstore.New(pool), file, domain.SystemClock{}); err != nil {
		f.Fatalf("import: %v", err)
	}

	logs := &logTail{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	runner := projections.NewRunner(pool, projections.Customers{}, log)
	runner.Poll = 5 * time.Millisecond
	svc := app.New(pool, app.WithTxHook(projections.Inline), app.WithClock(domain.SystemClock{}))
	srv := handlers.New(handlers.Config{
		Pool: pool, App: svc, Queries: projections.NewQueries(pool), Log: log,
		Ready: func(ctx context.Context) error { return pool.Ping(ctx) },
	})
	ts := httptest.NewServer(srv)
	f.Cleanup(ts.Close)
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- runner.Run(runCtx) }()
	f.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			f.Errorf("projector: %v", err)
		}
	})

	e := &env{pool: pool, srv: srv, url: ts.URL, client: ts.Client(), names: map[string]string{}}
	e.client.Timeout = 30 * time.Second
	e.northwind, e.tailspin = file.MSPs[0].ID, file.MSPs[1].ID
	e.alex, e.sam, e.kim = file.MSPs[0].Users[0].APIKey, file.MSPs[0].Users[1].APIKey, file.MSPs[1].Users[0].APIKey
	e.contoso, e.adatum, e.street, e.fabrikam = file.Customers[0].ID, file.Customers[1].ID, file.Customers[2].ID, file.Customers[3].ID
	for _, c := range file.Customers {
		e.names[c.ID] = c.Name
	}
	q := projections.NewQueries(pool)
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range file.Customers {
		for {
			_, err := q.Customer(ctx, c.MSPID, c.ID)
			if err == nil {
				break
			}
			if !errors.Is(err, domain.ErrNotFound) || time.Now().After(deadline) {
				f.Fatalf("customer %s is not projected: %v", c.ID, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	w := &fuzzWorld{e: e, logs: logs}
	add := func(code string, n int) []byte {
		return fmt.Appendf(nil, `{"product_code":%q,"term_type":"12 Month","seats":%d}`, code, n)
	}
	// The recipes tolerate refusals: an order the fuzzer submitted may
	// have moved a customer on, and a slot is then in another state,
	// which is as good a target.
	w.slots = []*quoteSlot{
		{name: "fresh", recipe: func(w *fuzzWorld, tb testing.TB) string { return w.openQuote(tb, e.alex, e.contoso) }},
		{name: "raised", recipe: func(w *fuzzWorld, tb testing.TB) string {
			id := w.openQuote(tb, e.alex, e.contoso)
			w.raise(tb, e.alex, id)
			return id
		}},
		{name: "added", recipe: func(w *fuzzWorld, tb testing.TB) string {
			id := w.openQuote(tb, e.alex, e.adatum)
			w.step(tb, e.alex, "POST", quotePath(id, "/products"), add("AWARENESS", 150))
			w.step(tb, e.alex, "POST", quotePath(id, "/save"), nil)
			return id
		}},
		{name: "reviewed", recipe: func(w *fuzzWorld, tb testing.TB) string {
			id := w.openQuote(tb, e.alex, e.adatum)
			w.raise(tb, e.alex, id)
			w.step(tb, e.alex, "POST", quotePath(id, "/review"), nil)
			return id
		}},
		{name: "acknowledged", recipe: func(w *fuzzWorld, tb testing.TB) string {
			id := w.openQuote(tb, e.alex, e.street)
			w.raise(tb, e.alex, id)
			w.step(tb, e.alex, "POST", quotePath(id, "/review"), nil)
			w.step(tb, e.alex, "POST", quotePath(id, "/acknowledgements"), []byte(`{"msa_governs_order":true,"authorized_to_order":true}`))
			return id
		}},
		{name: "cancelled", recipe: func(w *fuzzWorld, tb testing.TB) string {
			id := w.openQuote(tb, e.alex, e.contoso)
			w.step(tb, e.alex, "POST", quotePath(id, "/cancel"), nil)
			return id
		}},
		{name: "other MSP's", recipe: func(w *fuzzWorld, tb testing.TB) string {
			id := w.openQuote(tb, e.kim, e.fabrikam)
			w.raise(tb, e.kim, id)
			return id
		}},
	}
	for _, s := range w.slots {
		s.id = s.recipe(w, f)
	}
	return w
}

// maxSlotWrites bounds a slot quote's stream, so that loading it stays
// cheap however long the fuzzer runs.
const maxSlotWrites = 40

// slot returns the i-th slot and its quote's id, made anew when the
// quote is closed (the cancelled slot is closed by design) or long.
func (w *fuzzWorld) slot(tb testing.TB, i int) (*quoteSlot, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.slots[i%len(w.slots)]
	if s.writes > maxSlotWrites || s.closed {
		s.id, s.writes, s.closed = s.recipe(w, tb), 0, false
	}
	return s, s.id
}

func (w *fuzzWorld) openQuote(tb testing.TB, key, customer string) string {
	tb.Helper()
	r := w.step(tb, key, "POST", "/v1/customers/"+customer+"/change-quotes", nil)
	if r.status != http.StatusCreated {
		tb.Fatalf("open a quote on %s: %s", customer, r)
	}
	return str(r.body["quote_id"])
}

// raise raises the quote's EMAIL-SEC line by one seat above the
// subscription's, whatever orders were submitted before.
func (w *fuzzWorld) raise(tb testing.TB, key, id string) {
	tb.Helper()
	r := w.step(tb, key, "GET", quotePath(id, "/preview"), nil)
	for _, l := range asList(r.body["current_products"]) {
		if m, ok := l.(map[string]any); ok && m["product_code"] == "EMAIL-SEC" {
			n, err := strconv.Atoi(str(m["seats"]))
			if err == nil && n < domain.MaxSeats {
				w.step(tb, key, "PUT", quotePath(id, "/seats"), fmt.Appendf(nil, `{"product_code":"EMAIL-SEC","total_seats":%d}`, n+1))
			}
		}
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// step sends a request that a recipe expects to pass; a refusal is
// tolerated, a 5xx is not.
func (w *fuzzWorld) step(tb testing.TB, key, method, path string, body []byte) reply {
	tb.Helper()
	r, err := w.send(method, w.e.url+path, key, body, nil)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	if r.status >= 500 {
		tb.Fatalf("%s\nserver log:\n%s", r, w.logs.String())
	}
	return r
}

// errUnsendable is a request the client cannot send (a URL it cannot
// parse): not an input the server can see.
var errUnsendable = errors.New("the client cannot send this request")

// send sends one request. A nil body sends none; an empty header value
// sends no header; characters the HTTP client refuses in a header value
// are left out. A URL the client cannot parse is errUnsendable; any other
// failure is the server's.
func (w *fuzzWorld) send(method, rawURL, key string, body []byte, headers [][2]string) (reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, rawURL, rd)
	if err != nil {
		return reply{}, fmt.Errorf("%w: %v", errUnsendable, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for _, h := range headers {
		if v := sendableHeaderValue(h[1]); v == "" {
			req.Header.Del(h[0])
		} else {
			req.Header.Set(h[0], v)
		}
	}
	resp, err := w.e.client.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, rawURL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: read the body: %w", method, rawURL, err)
	}
	r := reply{method: method, path: req.URL.RequestURI(), status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(bytes.TrimSpace(raw)) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return r, fmt.Errorf("%s: the body is not JSON: %v", r, err)
		}
		r.body, _ = v.(map[string]any)
	}
	return r, nil
}

// sendableHeaderValue is v without what net/http's client refuses in a
// header value (control characters but tab), so that every fuzz input
// sends a request.
func sendableHeaderValue(v string) string {
	return strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return -1
		}
		return r
	}, v)
}

// eventsInLog counts the whole event log of the world's database.
func (w *fuzzWorld) eventsInLog(tb testing.TB) int64 {
	tb.Helper()
	var n int64
	if err := w.e.pool.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		tb.Fatalf("count the events: %v", err)
	}
	return n
}

// checkAnswer holds the properties every answer must have: no 5xx; a 4xx
// is a problem with a known code; a refusal appended nothing (appended is
// how many events the request added to the log).
func (w *fuzzWorld) checkAnswer(t *testing.T, r reply, appended int64) {
	t.Helper()
	if r.status >= 500 {
		t.Fatalf("a 5xx: %s\nserver log:\n%s", r, w.logs.String())
	}
	if (r.status < 200 || r.status > 299) && appended != 0 {
		t.Errorf("a refused request appended %d event(s): %s", appended, r)
	}
	if r.status < 400 {
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", r, ct)
	}
	if r.body == nil {
		t.Fatalf("%s: the problem is not a JSON object", r)
	}
	code := str(r.body["code"])
	if !problemCodes[r.status][code] {
		t.Errorf("%s: code %q is not one of API.md's for %d", r, code, r.status)
	}
	if str(r.body["status"]) != strconv.Itoa(r.status) || str(r.body["type"]) != handlers.ProblemType(code) ||
		str(r.body["title"]) == "" || str(r.body["detail"]) == "" {
		t.Errorf("%s: not an RFC 9457 problem with status, type, title and detail", r)
	}
}

// commandRoutes are the routes that append; {quote} and {customer} and
// {product} are filled in by the fuzz input.
var commandRoutes = []struct{ method, path string }{
	{"POST", "/v1/customers/{customer}/change-quotes"},
	{"POST", "/v1/change-quotes/{quote}/products"},
	{"DELETE", "/v1/change-quotes/{quote}/products/{product}"},
	{"PUT", "/v1/change-quotes/{quote}/seats"},
	{"POST", "/v1/change-quotes/{quote}/save"},
	{"POST", "/v1/change-quotes/{quote}/cancel"},
	{"POST", "/v1/change-quotes/{quote}/review"},
	{"POST", "/v1/change-quotes/{quote}/acknowledgements"},
	{"POST", "/v1/change-quotes/{quote}/submit"},
}

// target is how a fuzz input names the path parameters and the caller:
//
//	bits 0-2  the slot quote (7: the param itself is the quote id)
//	bit  3    the param is put in the path raw (else path-escaped)
//	bit  4    the caller is u-kim of the other MSP (else u-alex)
//	bits 5-6  the customer: contoso, adatum, fabrikam (another MSP's), the param
type target uint8

func (tg target) slot() int          { return int(tg & 7) }
func (tg target) paramIsQuote() bool { return tg&7 == 7 }
func (tg target) raw() bool          { return tg&8 != 0 }
func (tg target) asKim() bool        { return tg&16 != 0 }
func (tg target) customer() int      { return int(tg>>5) & 3 }

// segment renders a path parameter from the fuzz input: raw when asked
// and the client can send it (no control characters, no invalid
// escapes), else path-escaped.
func (tg target) segment(param string) string {
	if tg.raw() {
		if _, err := url.Parse("/x/" + param); err == nil {
			return param
		}
	}
	return url.PathEscape(param)
}

// FuzzCommand sends one command: any route, any body, Content-Type,
// If-Match and Idempotency-Key, on a quote in any state (or a path
// parameter of the fuzzer's), as either MSP.
func FuzzCommand(f *testing.F) {
	w := newFuzzWorld(f)
	add := func(route uint8, tg target, param, body, ctype, ifMatch, key string) {
		f.Add(route, uint8(tg), param, []byte(body), ctype, ifMatch, key)
	}
	const (
		open = iota
		products
		remove
		seats
		save
		cancel
		review
		acknowledge
		submit
	)
	const (
		fresh target = iota
		raised
		added
		reviewed
		acknowledged
		cancelled
		otherMSP
		byParam
	)
	seats700 := `{"product_code":"EMAIL-SEC","total_seats":700}`
	// Valid commands in every state.
	add(open, 0, "", "", "", "", "")
	add(open, 1<<5, "", "", "", "", "")
	add(products, fresh, "", `{"product_code":"AWARENESS","term_type":"12 Month","seats":700}`, "", "", "")
	add(remove, added, "AWARENESS", "", "", "", "")
	add(seats, fresh, "", seats700, "", "", "")
	add(save, raised, "", "", "", "", "")
	add(cancel, fresh, "", "", "", "", "")
	add(review, raised, "", "", "", "", "")
	add(acknowledge, reviewed, "", `{"msa_governs_order":true,"authorized_to_order":true}`, "", "", "")
	add(submit, acknowledged, "", "", "", "", "")
	// Refusals of the domain.
	add(seats, fresh, "", `{"product_code":"EMAIL-SEC","total_seats":-1}`, "", "", "")
	add(seats, fresh, "", `{"product_code":"EMAIL-SEC","total_seats":0}`, "", "", "")
	add(seats, raised, "", `{"product_code":"EMAIL-SEC","total_seats":2147483648}`, "", "", "")
	add(products, fresh, "", `{"product_code":"AWARENESS","term_type":"12 Month","seats":-5}`, "", "", "")
	add(products, fresh, "", `{"product_code":"EMAIL-SEC\u0000","term_type":"12 Month","seats":1}`, "", "", "")
	add(products, fresh, "", `{"product_code":"AWARENESS","term_type":"12 Month\u202e","seats":1}`, "", "", "")
	add(products, cancelled, "", `{"product_code":"DMARC","term_type":"12 Month","seats":1}`, "", "", "")
	add(submit, reviewed, "", "", "", "", "")
	add(acknowledge, reviewed, "", `{"msa_governs_order":true}`, "", "", "")
	add(review, fresh, "", "", "", "", "")
	add(remove, fresh, "EMAIL-SEC", "", "", "", "")
	// Malformed bodies.
	add(seats, fresh, "", `{"product_code":`, "", "", "")
	add(seats, fresh, "", `{"product_code":"EMAIL-SEC","total_seats":1e400}`, "", "", "")
	add(seats, fresh, "", `{"product_code":"EMAIL-SEC","total_seats":9223372036854775808}`, "", "", "")
	add(seats, fresh, "", `{"product_code":"EMAIL-SEC","total_seats":700.5}`, "", "", "")
	add(seats, fresh, "", `{"product_code":"EMAIL-SEC","total_seats":700,"total_seats":701}`, "", "", "")
	add(seats, fresh, "", `{"Product_Code":"EMAIL-SEC","total_seats":700}`, "", "", "")
	add(seats, fresh, "", `[`+strings.Repeat("[", 200)+`]`, "", "", "")
	add(seats, fresh, "", seats700+` {}`, "", "", "")
	add(products, fresh, "", `{"product_code":"DMARC","term_type":null,"seats":1}`, "", "", "")
	add(acknowledge, reviewed, "", `{"msa_governs_order":"true","authorized_to_order":1}`, "", "", "")
	add(save, fresh, "", `null`, "", "", "")
	add(save, fresh, "", `"\ud800"`, "", "", "")
	add(save, fresh, "", "\xff\xfe{}", "", "", "")
	// SQL metacharacters.
	add(seats, fresh, "", `{"product_code":"'; DROP TABLE events; --","total_seats":700}`, "", "", "")
	add(products, fresh, "", `{"product_code":"%","term_type":"_","seats":1}`, "", "", "")
	add(remove, added, `'; DROP TABLE events; --`, "", "", "", "")
	add(open, 3<<5, `%_\'`, "", "", "", "")
	// Headers.
	add(seats, fresh, "", seats700, "text/plain", "", "")
	add(seats, fresh, "", seats700, "application/json; charset=\"", "", "")
	add(seats, fresh, "", seats700, "-", "", "")
	add(seats, raised, "", seats700, "", `"1"`, "")
	add(seats, raised, "", seats700, "", `W/"2"`, "")
	add(seats, raised, "", seats700, "", `"-1"`, "")
	add(seats, raised, "", seats700, "", `"99999999999999999999"`, "")
	add(seats, raised, "", seats700, "", `*`, "")
	add(save, fresh, "", "", "", "", "fuzz-key")
	add(seats, fresh, "", seats700, "", "", "fuzz-key")
	add(save, fresh, "", "", "", "", "k\u00e9y")
	add(save, fresh, "", "", "", "", strings.Repeat("k", 256))
	// Path parameters.
	add(save, byParam, "not-a-uuid", "", "", "", "")
	add(save, byParam|8, "..%2f..%2fcustomers", "", "", "", "")
	add(save, byParam|8, "../../v1/customers/cust-contoso/change-quotes", "", "", "", "")
	add(save, byParam, strings.Repeat("a", 300), "", "", "", "")
	add(save, byParam, "00000000-0000-0000-0000-000000000000", "", "", "", "")
	add(save, byParam|8, "%00", "", "", "", "")
	add(save, byParam|8, "%ff", "", "", "", "")
	add(remove, fresh|8, "%2e%2e", "", "", "", "")
	add(open, 3<<5, "cust-fabrikam", "", "", "", "")
	add(open, 3<<5|8, "cust-contoso%00", "", "", "", "")
	// Another MSP's caller.
	add(seats, fresh|16, "", seats700, "", "", "")
	add(submit, acknowledged|16, "", "", "", "", "")
	add(open, 16, "", "", "", "", "")

	f.Fuzz(func(t *testing.T, route, tgByte uint8, param string, body []byte, ctype, ifMatch, idemKey string) {
		tg := target(tgByte)
		rt := commandRoutes[int(route)%len(commandRoutes)]
		key := w.e.alex
		if tg.asKim() {
			key = w.e.kim
		}
		var slot *quoteSlot
		path := rt.path
		if strings.Contains(path, "{quote}") {
			quote, product := tg.segment(param), "AWARENESS"
			if !tg.paramIsQuote() {
				slot, quote = w.slot(t, tg.slot())
				product = tg.segment(param)
			}
			path = strings.NewReplacer("{quote}", quote, "{product}", product).Replace(path)
		} else {
			customer := []string{w.e.contoso, w.e.adatum, w.e.fabrikam, tg.segment(param)}[tg.customer()]
			path = strings.Replace(path, "{customer}", customer, 1)
		}
		if len(body) == 0 {
			body = nil
		}
		headers := [][2]string{{"If-Match", ifMatch}, {"Idempotency-Key", idemKey}}
		switch ctype {
		case "":
		case "-":
			headers = append(headers, [2]string{"Content-Type", ""})
		default:
			headers = append(headers, [2]string{"Content-Type", ctype})
		}

		before := w.eventsInLog(t)
		r, err := w.send(rt.method, w.e.url+path, key, body, headers)
		if errors.Is(err, errUnsendable) {
			return
		}
		if err != nil {
			t.Fatalf("%v\nserver log:\n%s", err, w.logs.String())
		}
		appended := w.eventsInLog(t) - before
		t.Logf("%s (%d event(s) appended)", r, appended)
		w.checkAnswer(t, r, appended)
		if slot != nil && r.status/100 == 2 {
			w.mu.Lock()
			slot.writes++
			if st := str(r.body["status"]); st == "submitted" || st == "cancelled" {
				slot.closed = true
			}
			w.mu.Unlock()
		}
	})
}

// queryRoutes are the routes that read.
var queryRoutes = []string{
	"/v1/customers",
	"/v1/customers/{customer}",
	"/v1/customers/{customer}/change-quotes",
	"/v1/change-quotes/{quote}",
	"/v1/change-quotes/{quote}/preview",
	"/v1/change-quotes/{quote}/summary",
	"/v1/change-quotes/{quote}/events",
	"/v1/catalog/products",
}

// queryParams are the parameters the reads take; the fuzz input names one
// to give its value (query-escaped), besides a raw query of its own.
var queryParams = []string{"q", "letter", "limit", "cursor", "as_of", "as_of_version", "status"}

// FuzzQuery sends one read: any route, path parameter, query string and
// If-None-Match. A read never appends, and never fails as a 5xx.
func FuzzQuery(f *testing.F) {
	w := newFuzzWorld(f)
	add := func(route uint8, tg target, param string, name uint8, value, rawQuery, inm string) {
		f.Add(route, uint8(tg), param, name, value, rawQuery, inm)
	}
	const (
		customers = iota
		customer
		quotesOf
		quote
		preview
		summary
		events
		catalog
	)
	const (
		q = iota
		letter
		limit
		cursor
		asOf
		asOfVersion
		status
	)
	add(customers, 0, "", q, "contoso", "", "")
	add(customers, 0, "", q, `'; DROP TABLE events; --`, "", "")
	add(customers, 0, "", q, `%`, "", "")
	add(customers, 0, "", q, `_`, "", "")
	add(customers, 0, "", q, `\`, "", "")
	add(customers, 0, "", q, "\u202eltd\U0001F600", "", "")
	add(customers, 0, "", q, "\x00", "", "")
	add(customers, 0, "", q, "\xff", "", "")
	add(customers, 0, "", q, strings.Repeat("x", 300), "", "")
	add(customers, 0, "", letter, "#", "", "")
	add(customers, 0, "", letter, "c", "", "")
	add(customers, 0, "", letter, "É", "", "")
	add(customers, 0, "", letter, "%", "", "")
	add(customers, 0, "", limit, "1", "", "")
	add(customers, 0, "", limit, "-1", "", "")
	add(customers, 0, "", limit, "9223372036854775808", "", "")
	add(customers, 0, "", limit, "1e3", "", "")
	add(customers, 0, "", cursor, "WyJjb250b3NvIGx0ZCIsImN1c3QtY29udG9zbyJd", "", "") // ["contoso ltd","cust-contoso"]
	add(customers, 0, "", cursor, "WyJcdTAwMDAiLCJ4Il0", "", "")                      // ["\u0000","x"]
	add(customers, 0, "", cursor, "bnVsbA", "", "")                                   // null
	add(customers, 0, "", cursor, "W10", "", "")                                      // []
	add(customers, 0, "", cursor, "WzEsMl0", "", "")                                  // [1,2]
	add(customers, 0, "", cursor, "'; DROP TABLE events; --", "", "")
	add(customers, 0, "", q, "a", "q=b&letter=A&limit=2", "")
	add(customers, 0, "", q, "", "%zz", "")
	add(customers, 0, "", q, "", "q=%00", "")
	add(customer, 0, "", q, "", "", "")
	add(customer, 3<<5, "'; DROP TABLE events; --", q, "", "", "")
	add(customer, 3<<5, strings.Repeat("c", 300), q, "", "", "")
	add(customer, 3<<5|8, "..%2f..%2fcatalog%2fproducts", q, "", "", "")
	add(customer, 3<<5|8, "%c0%ae", q, "", "", "")
	add(customer, 2<<5, "", q, "", "", "")
	add(quotesOf, 0, "", status, "draft", "", "")
	add(quotesOf, 0, "", status, "DRAFT", "", "")
	add(quotesOf, 0, "", status, "draft'--", "", "")
	add(quote, 0, "", q, "", "", "")
	add(preview, 1, "", asOfVersion, "1", "", "")
	add(preview, 1, "", asOfVersion, "0", "", "")
	add(preview, 1, "", asOfVersion, "9223372036854775807", "", "")
	add(preview, 1, "", asOfVersion, "99999999999999999999", "", "")
	add(preview, 1, "", asOf, "2026-01-01T00:00:00Z", "", "")
	add(preview, 1, "", asOf, "0001-01-01T00:00:00Z", "", "")
	add(preview, 1, "", asOf, "9999-12-31T23:59:59.999999999+14:00", "", "")
	add(preview, 1, "", asOf, "-0001-01-01T00:00:00Z", "", "")
	add(preview, 1, "", asOf, "2026-13-45T25:61:61Z", "", "")
	add(preview, 1, "", asOf, "2026-01-01T00:00:00Z", "as_of_version=1", "")
	add(preview, 1, "", q, "", "", `"2"`)
	add(preview, 1, "", q, "", "", `*`)
	add(preview, 1, "", q, "", "", `W/"2", "x"`)
	add(preview, 7, "not-a-uuid", q, "", "", "")
	add(preview, 7|8, "..%2f", q, "", "", "")
	add(preview, 7, strings.Repeat("9", 300), q, "", "", "")
	add(preview, 6, "", q, "", "", "")
	add(preview, 1|16, "", q, "", "", "")
	add(summary, 3, "", q, "", "", "")
	add(summary, 0, "", q, "", "", "")
	add(events, 2, "", q, "", "", "")
	add(catalog, 0, "", q, "", "", "")

	f.Fuzz(func(t *testing.T, route, tgByte uint8, param string, name uint8, value, rawQuery, inm string) {
		tg := target(tgByte)
		path := queryRoutes[int(route)%len(queryRoutes)]
		key := w.e.alex
		if tg.asKim() {
			key = w.e.kim
		}
		if strings.Contains(path, "{quote}") {
			quote := tg.segment(param)
			if !tg.paramIsQuote() {
				_, quote = w.slot(t, tg.slot())
			}
			path = strings.Replace(path, "{quote}", quote, 1)
		} else {
			customer := []string{w.e.contoso, w.e.adatum, w.e.fabrikam, tg.segment(param)}[tg.customer()]
			path = strings.Replace(path, "{customer}", customer, 1)
		}
		var query []string
		if value != "" {
			query = append(query, queryParams[int(name)%len(queryParams)]+"="+url.QueryEscape(value))
		}
		if rawQuery != "" {
			query = append(query, sendableQuery(rawQuery))
		}
		if len(query) > 0 {
			path += "?" + strings.Join(query, "&")
		}

		before := w.eventsInLog(t)
		r, err := w.send("GET", w.e.url+path, key, nil, [][2]string{{"If-None-Match", inm}})
		if errors.Is(err, errUnsendable) {
			return
		}
		if err != nil {
			t.Fatalf("%v\nserver log:\n%s", err, w.logs.String())
		}
		t.Logf("%s", r)
		if appended := w.eventsInLog(t) - before; appended != 0 {
			t.Errorf("a read appended %d event(s): %s", appended, r)
		}
		w.checkAnswer(t, r, 0)
		if r.status == http.StatusOK && r.body == nil {
			t.Errorf("%s: a 200 read is not a JSON object", r)
		}
	})
}

// sendableQuery escapes what cannot stand in an HTTP request line (space
// and control characters): net/http's client sends a raw query as it is,
// and a server answers a request line it cannot parse with a plain 400 of
// its own before any handler sees it. Everything else is left raw.
func sendableQuery(q string) string {
	var b strings.Builder
	for _, c := range []byte(q) {
		if c <= ' ' || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// scratchPool creates a migrated database of the caller's own, dropped
// when the caller ends. Its name starts upsell_fuzz_ and holds its time of
// creation: databases of a run that was killed before it could drop them
// are dropped by a later run once they are an hour old.
func scratchPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, testdb.ServerURL())
	if err != nil {
		tb.Fatalf("PostgreSQL is not reachable (set DATABASE_URL, or run scripts/test.sh): %v", err)
	}
	defer admin.Close(context.Background())
	dropStaleFuzzDatabases(ctx, admin)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("upsell_fuzz_%d_%s", time.Now().Unix(), hex.EncodeToString(rnd[:]))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("create %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, testdb.ServerURL())
		if err != nil {
			tb.Errorf("drop %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(testdb.ServerURL())
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("connect to %s: %v", name, err)
	}
	tb.Cleanup(pool.Close) // runs before the drop (cleanups run last first)
	if _, err := migrations.Apply(ctx, pool); err != nil {
		tb.Fatalf("migrate %s: %v", name, err)
	}
	return pool
}

// dropStaleFuzzDatabases drops the scratch databases of fuzz runs older
// than an hour that nobody is connected to (a fuzz worker stopped by a
// signal cannot drop its own).
func dropStaleFuzzDatabases(ctx context.Context, admin *pgx.Conn) {
	rows, err := admin.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'upsell\_fuzz\_%'`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		parts := strings.Split(n, "_")
		if len(parts) != 4 {
			continue
		}
		at, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil || time.Since(time.Unix(at, 0)) < time.Hour {
			continue
		}
		// Without FORCE: a database someone is connected to stays.
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize())
	}
}

// logTail keeps the last lines the server logged, to show with a finding.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(string(p)))
	if len(l.lines) > 20 {
		l.lines = l.lines[len(l.lines)-20:]
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
