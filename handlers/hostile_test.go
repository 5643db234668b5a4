package handlers_test

// Hostile input, as table tests: every case is one request that the API
// must refuse with a clear 4xx and the code API.md gives it, quickly, and
// without appending anything (the events of this test's MSPs are counted
// before and after each case).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// hostileCase is one request and the problem it must get.
type hostileCase struct {
	name         string
	method, path string
	body         any      // as env.do sends it
	headers      []string // name, value pairs
	status       int
	code, field  string // field: the problem's field, when given
}

// mspEvents counts the events the test's MSPs' users appended (every
// command records its actor), to any stream.
func (e *env) mspEvents() int64 {
	e.t.Helper()
	var n int64
	err := e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM events WHERE metadata->>'msp_id' = ANY($1)`, []string{e.northwind, e.tailspin}).Scan(&n)
	if err != nil {
		e.t.Fatalf("count the events: %v", err)
	}
	return n
}

// runHostile runs each case as a subtest: the problem with its code (and
// field), in under maxLatency, and nothing appended.
func (e *env) runHostile(t *testing.T, cases []hostileCase) {
	t.Helper()
	const maxLatency = 5 * time.Second // generous: -race and a shared machine
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.on(t)
			before := e.mspEvents()
			start := time.Now()
			r := e.do(c.method, c.path, e.alex, c.body, c.headers...)
			if d := time.Since(start); d > maxLatency {
				t.Errorf("%s %s took %v", c.method, short(c.path), d)
			}
			e.wantProblem(r, c.status, c.code)
			if c.field != "" && str(r.body["field"]) != c.field {
				t.Errorf("field %s, want %s", str(r.body["field"]), c.field)
			}
			if n := e.mspEvents(); n != before {
				t.Errorf("the refused request appended %d event(s)", n-before)
			}
		})
	}
}

// short keeps long paths readable in messages.
func short(s string) string {
	if len(s) > 120 {
		return fmt.Sprintf("%s…(%d bytes)", s[:120], len(s))
	}
	return s
}

// The names of the customers TestHostileText adds, before the test's
// token: unicode, control characters and SQL metacharacters.
var hostileNames = []string{
	"Ünïcødé 😀 Ltd",
	"\u202eRTL override Inc",
	"100% Pure_Water \\ Co",
	"O'Brien'; DROP TABLE events; -- Ltd",
	"Zero\u200bWidth\u200d Joiner",
}

// TestHostileBodies: bodies that are too large, too deep, or hold numbers
// no seat count can be.
func TestHostileBodies(t *testing.T) {
	t.Parallel()
	e := setup(t)
	fresh := e.open(e.contoso)
	reviewed := e.raised()
	e.must(http.StatusOK, "POST", quotePath(reviewed, "/review"), nil)
	seats := func(n string) string { return `{"product_code":"EMAIL-SEC","total_seats":` + n + `}` }
	add := func(n string) string {
		return `{"product_code":"AWARENESS","term_type":"12 Month","seats":` + n + `}`
	}
	pad := func(json string, size int) string { // json padded with spaces to size bytes
		return json + strings.Repeat(" ", size-len(json))
	}
	nested := func(open, close string, depth int) string {
		return strings.Repeat(open, depth) + strings.Repeat(close, depth)
	}
	put, post := "PUT", "POST"

	cases := []hostileCase{
		// 413: one byte over 64 KiB, and far over, on every command.
		{name: "seats 64 KiB + 1", method: put, path: quotePath(fresh, "/seats"), body: pad(seats("700"), 64<<10+1), status: 413, code: "body_too_large"},
		{name: "seats 1 MiB", method: put, path: quotePath(fresh, "/seats"), body: pad(seats("700"), 1<<20), status: 413, code: "body_too_large"},
		{name: "products 64 KiB + 1", method: post, path: quotePath(fresh, "/products"), body: pad(add("1"), 64<<10+1), status: 413, code: "body_too_large"},
		{name: "acknowledgements 64 KiB + 1", method: post, path: quotePath(reviewed, "/acknowledgements"),
			body: pad(`{"msa_governs_order":true,"authorized_to_order":true}`, 64<<10+1), status: 413, code: "body_too_large"},
		{name: "save with a 100 KiB body", method: post, path: quotePath(fresh, "/save"), body: pad("{}", 100<<10), status: 413, code: "body_too_large"},
		{name: "open with a 100 KiB body", method: post, path: "/v1/customers/" + e.contoso + "/change-quotes", body: pad("{}", 100<<10), status: 413, code: "body_too_large"},
		{name: "submit with a 100 KiB string", method: post, path: quotePath(reviewed, "/submit"), body: `"` + strings.Repeat("x", 100<<10) + `"`, status: 413, code: "body_too_large"},

		// Deep nesting: encoding/json takes 10000 levels, refuses 10001.
		{name: "10000 nested arrays", method: put, path: quotePath(fresh, "/seats"), body: nested("[", "]", 10000), status: 400, code: "invalid_field"},
		{name: "10001 nested arrays", method: put, path: quotePath(fresh, "/seats"), body: nested("[", "]", 10001), status: 400, code: "malformed_json"},
		{name: "32000 nested arrays", method: put, path: quotePath(fresh, "/seats"), body: nested("[", "]", 32000), status: 400, code: "malformed_json"},
		{name: "10000 unclosed arrays", method: put, path: quotePath(fresh, "/seats"), body: strings.Repeat("[", 10000), status: 400, code: "malformed_json"},
		{name: "nested arrays in a field", method: put, path: quotePath(fresh, "/seats"),
			body: `{"product_code":` + nested("[", "]", 9000) + `,"total_seats":700}`, status: 400, code: "invalid_field", field: "product_code"},
		{name: "nested objects in a field", method: post, path: quotePath(fresh, "/products"),
			body:   `{"product_code":` + strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000) + `,"term_type":"12 Month","seats":1}`,
			status: 400, code: "invalid_field", field: "product_code"},
		{name: "nested objects on a command without fields", method: post, path: quotePath(fresh, "/save"),
			body: strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000), status: 400, code: "unknown_field", field: "a"},
		{name: "10000 nested arrays with an idempotency key", method: put, path: quotePath(fresh, "/seats"), body: nested("[", "]", 10000),
			headers: []string{"Idempotency-Key", "deep-" + e.sfx}, status: 400, code: "invalid_field"},

		// Numbers no seat count can be.
		{name: "total_seats 1e400", method: put, path: quotePath(fresh, "/seats"), body: seats("1e400"), status: 400, code: "invalid_field", field: "total_seats"},
		{name: "total_seats 2^63", method: put, path: quotePath(fresh, "/seats"), body: seats("9223372036854775808"), status: 400, code: "invalid_field", field: "total_seats"},
		{name: "total_seats -2^63-1", method: put, path: quotePath(fresh, "/seats"), body: seats("-9223372036854775809"), status: 400, code: "invalid_field", field: "total_seats"},
		{name: "total_seats 1e3", method: put, path: quotePath(fresh, "/seats"), body: seats("1e3"), status: 400, code: "invalid_field", field: "total_seats"},
		{name: "total_seats 700.0", method: put, path: quotePath(fresh, "/seats"), body: seats("700.0"), status: 400, code: "invalid_field", field: "total_seats"},
		{name: "total_seats 0x2BC", method: put, path: quotePath(fresh, "/seats"), body: seats("0x2BC"), status: 400, code: "malformed_json"},
		{name: "total_seats 0700", method: put, path: quotePath(fresh, "/seats"), body: seats("0700"), status: 400, code: "malformed_json"},
		{name: "total_seats NaN", method: put, path: quotePath(fresh, "/seats"), body: seats("NaN"), status: 400, code: "malformed_json"},
		{name: "total_seats Infinity", method: put, path: quotePath(fresh, "/seats"), body: seats("Infinity"), status: 400, code: "malformed_json"},
		{name: `total_seats "700"`, method: put, path: quotePath(fresh, "/seats"), body: seats(`"700"`), status: 400, code: "invalid_field", field: "total_seats"},
		{name: "total_seats 2^31", method: put, path: quotePath(fresh, "/seats"), body: seats("2147483648"), status: 422, code: "invalid_seats"},
		{name: "total_seats 2^63-1", method: put, path: quotePath(fresh, "/seats"), body: seats("9223372036854775807"), status: 422, code: "invalid_seats"},
		{name: "total_seats MaxSeats+1", method: put, path: quotePath(fresh, "/seats"), body: seats("10000001"), status: 422, code: "invalid_seats"},
		{name: "seats 2^31", method: post, path: quotePath(fresh, "/products"), body: add("2147483648"), status: 422, code: "invalid_seats"},
		{name: "seats 2^63", method: post, path: quotePath(fresh, "/products"), body: add("9223372036854775808"), status: 400, code: "invalid_field", field: "seats"},
		{name: "seats 1e400", method: post, path: quotePath(fresh, "/products"), body: add("1e400"), status: 400, code: "invalid_field", field: "seats"},

		// Negative and zero seats: below the subscription is a decrease, an
		// added product needs at least one seat.
		{name: "total_seats -1", method: put, path: quotePath(fresh, "/seats"), body: seats("-1"), status: 422, code: "seats_decrease"},
		{name: "total_seats 0", method: put, path: quotePath(fresh, "/seats"), body: seats("0"), status: 422, code: "seats_decrease"},
		{name: "total_seats -0", method: put, path: quotePath(fresh, "/seats"), body: seats("-0"), status: 422, code: "seats_decrease"},
		{name: "total_seats -2^63", method: put, path: quotePath(fresh, "/seats"), body: seats("-9223372036854775808"), status: 422, code: "seats_decrease"},
		{name: "total_seats one below", method: put, path: quotePath(fresh, "/seats"), body: seats("681"), status: 422, code: "seats_decrease"},
		{name: "seats 0", method: post, path: quotePath(fresh, "/products"), body: add("0"), status: 422, code: "invalid_seats"},
		{name: "seats -1", method: post, path: quotePath(fresh, "/products"), body: add("-1"), status: 422, code: "invalid_seats"},
		{name: "seats -2^63", method: post, path: quotePath(fresh, "/products"), body: add("-9223372036854775808"), status: 422, code: "invalid_seats"},
	}
	e.runHostile(t, cases)

	// The largest seat count there is is accepted, on an added product and
	// on the subscription; it prices without overflow.
	e.must(http.StatusOK, "POST", quotePath(fresh, "/products"), map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 10_000_000})
	e.must(http.StatusOK, "PUT", quotePath(fresh, "/seats"), map[string]any{"product_code": "EMAIL-SEC", "total_seats": 10_000_000})
	r := e.must(http.StatusOK, "GET", quotePath(fresh, "/preview"), nil)
	e.wantFields("preview at 10 million seats", r.body, map[string]string{"new_monthly_total": "41901125.30"})
}

// TestHostileChunkedBody: a body over 64 KiB sent without Content-Length
// (chunked) is refused as well as one that says its length.
func TestHostileChunkedBody(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	before := e.mspEvents()
	body := `{"product_code":"EMAIL-SEC","total_seats":700}` + strings.Repeat(" ", 70<<10)
	// io.MultiReader hides the length: the client sends it chunked.
	req, err := http.NewRequest("PUT", e.url+quotePath(quote, "/seats"), io.MultiReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.alex)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), `"body_too_large"`) {
		t.Errorf("chunked body of 70 KiB: %d %s, want 413 body_too_large", resp.StatusCode, raw)
	}
	if n := e.mspEvents(); n != before {
		t.Errorf("appended %d event(s)", n-before)
	}
}

// TestHostileText: unicode, control characters and SQL metacharacters in
// every text field of the bodies, in path parameters, query parameters and
// headers, and in the names of customers.
func TestHostileText(t *testing.T) {
	t.Parallel()
	e := setup(t, withCustomers(hostileNames...))
	fresh := e.open(e.contoso)
	added := e.open(e.contoso)
	e.must(http.StatusOK, "POST", quotePath(added, "/products"), map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 10})
	seats := func(code string) map[string]any { return map[string]any{"product_code": code, "total_seats": 700} }
	add := func(code, term string) map[string]any {
		return map[string]any{"product_code": code, "term_type": term, "seats": 10}
	}
	sql := []string{`'; DROP TABLE events; --`, `" OR 1=1 --`, `%`, `_`, `\`, `%_\`, `EMAIL%`, `EMAIL_SEC`, `EMAIL-SEC\`, `$1`, `E'\x41'`}
	weird := []string{"EMAIL-SEC\x00", "\x00", "EMAIL-SEC\u202e", "\u202eCES-LIAME", "EMAIL-SEC😀", "😀", "EMAIL\u200bSEC",
		"ＥＭＡＩＬ-ＳＥＣ", "email-sec", "EMAIL-SEC ", " EMAIL-SEC", "EMAIL-SEC\n", "EMAIL-SEC\t", "\ufeffEMAIL-SEC", "EMAIL-SEC\ufffd",
		"EMAİL-SEC", strings.Repeat("😀", 10000)}

	var cases []hostileCase
	for _, s := range append(sql, weird...) {
		cases = append(cases,
			hostileCase{name: "seats of " + s, method: "PUT", path: quotePath(fresh, "/seats"), body: seats(s), status: 422, code: "unknown_product"},
			hostileCase{name: "add " + s, method: "POST", path: quotePath(fresh, "/products"), body: add(s, "12 Month"), status: 422, code: "unknown_product"},
			hostileCase{name: "add AWARENESS on the term " + s, method: "POST", path: quotePath(fresh, "/products"), body: add("AWARENESS", s), status: 422, code: "unknown_term_type"},
		)
		if !strings.ContainsAny(s, "\x00\n\t") && len(s) < 1000 {
			cases = append(cases, hostileCase{name: "remove " + s, method: "DELETE", path: quotePath(added, "/products/"+url.PathEscape(s)), status: 422, code: "product_not_added"})
		}
		cases = append(cases,
			hostileCase{name: "open on the customer " + s, method: "POST", path: "/v1/customers/" + url.PathEscape(s) + "/change-quotes", status: 404, code: "not_found"},
			hostileCase{name: "the quote " + s, method: "GET", path: quotePath(url.PathEscape(s), "/preview"), status: 404, code: "not_found"},
			hostileCase{name: "save the quote " + s, method: "POST", path: quotePath(url.PathEscape(s), "/save"), status: 404, code: "not_found"},
		)
	}
	// Bytes that are not text: a raw control character in a JSON string
	// is not JSON; invalid UTF-8 is read as U+FFFD and names nothing.
	cases = append(cases,
		hostileCase{name: "raw NUL in a JSON string", method: "PUT", path: quotePath(fresh, "/seats"), body: "{\"product_code\":\"EMAIL-SEC\x00\",\"total_seats\":700}", status: 400, code: "malformed_json"},
		hostileCase{name: "raw newline in a JSON string", method: "PUT", path: quotePath(fresh, "/seats"), body: "{\"product_code\":\"EMAIL-\nSEC\",\"total_seats\":700}", status: 400, code: "malformed_json"},
		hostileCase{name: "invalid UTF-8 in a JSON string", method: "PUT", path: quotePath(fresh, "/seats"), body: "{\"product_code\":\"EMAIL-SEC\xff\",\"total_seats\":700}", status: 422, code: "unknown_product"},
		hostileCase{name: "a lone surrogate", method: "PUT", path: quotePath(fresh, "/seats"), body: `{"product_code":"EMAIL-SEC\ud800","total_seats":700}`, status: 422, code: "unknown_product"},
		hostileCase{name: "escaped NUL in a field name", method: "PUT", path: quotePath(fresh, "/seats"), body: `{"product_code\u0000":"EMAIL-SEC","total_seats":700}`, status: 400, code: "unknown_field"},
		hostileCase{name: "an RTL override in a field name", method: "PUT", path: quotePath(fresh, "/seats"), body: "{\"\u202eproduct_code\":\"EMAIL-SEC\",\"total_seats\":700}", status: 400, code: "unknown_field"},
		hostileCase{name: "a UTF-8 byte order mark before the body", method: "PUT", path: quotePath(fresh, "/seats"), body: "\ufeff" + `{"product_code":"EMAIL-SEC","total_seats":700}`, status: 400, code: "malformed_json"},
		hostileCase{name: "a UTF-16 body", method: "PUT", path: quotePath(fresh, "/seats"), body: "\xff\xfe{\x00}\x00", status: 400, code: "malformed_json"},
		hostileCase{name: "an acknowledgement as a string", method: "POST", path: quotePath(fresh, "/acknowledgements"), body: `{"msa_governs_order":"true'; --","authorized_to_order":true}`, status: 400, code: "invalid_field", field: "msa_governs_order"},
	)
	// Query parameters: SQL metacharacters and control characters are
	// refused or match nothing, never a 5xx.
	for _, s := range []string{`'; DROP TABLE events; --`, `%`, `_`, `\`, "\x00", "\xff", "A\x00", "😀", "\u202e", "Ａ"} {
		esc := url.QueryEscape(s)
		code := "invalid_parameter"
		cases = append(cases,
			hostileCase{name: "letter " + s, method: "GET", path: "/v1/customers?letter=" + esc, status: 400, code: code, field: "letter"},
			hostileCase{name: "limit " + s, method: "GET", path: "/v1/customers?limit=" + esc, status: 400, code: code, field: "limit"},
			hostileCase{name: "as_of " + s, method: "GET", path: quotePath(fresh, "/preview?as_of="+esc), status: 400, code: code, field: "as_of"},
			hostileCase{name: "as_of_version " + s, method: "GET", path: quotePath(fresh, "/preview?as_of_version="+esc), status: 400, code: code, field: "as_of_version"},
			hostileCase{name: "status " + s, method: "GET", path: "/v1/customers/" + e.contoso + "/change-quotes?status=" + esc, status: 400, code: code, field: "status"},
		)
		cursorCode, field := "invalid_cursor", "cursor"
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			cursorCode, field = "invalid_parameter", "cursor" // refused before it is read as a cursor
		}
		cases = append(cases, hostileCase{name: "cursor " + s, method: "GET", path: "/v1/customers?cursor=" + esc, status: 400, code: cursorCode, field: field})
	}
	cases = append(cases,
		hostileCase{name: "q NUL", method: "GET", path: "/v1/customers?q=%00", status: 400, code: "invalid_parameter", field: "q"},
		hostileCase{name: "q invalid UTF-8", method: "GET", path: "/v1/customers?q=%C0%AF", status: 400, code: "invalid_parameter", field: "q"},
		hostileCase{name: "a parameter name with NUL", method: "GET", path: "/v1/customers?q%00=x", status: 400, code: "invalid_parameter"},
	)
	// Headers.
	for _, h := range []string{`"1'; DROP TABLE events; --"`, `"٣"`, `"1" OR 1=1`, `"0x1"`, `"1e0"`, `""`, `"`, "\"1\u202e\""} {
		cases = append(cases, hostileCase{name: "If-Match " + h, method: "PUT", path: quotePath(fresh, "/seats"), body: seats("EMAIL-SEC"),
			headers: []string{"If-Match", h}, status: 400, code: "invalid_if_match", field: "If-Match"})
	}
	for _, k := range []string{"key'; DROP TABLE events; --", "ключ", "key\u202e", "😀", strings.Repeat("k", 256), "a\tb"} {
		cases = append(cases, hostileCase{name: "Idempotency-Key " + short(k), method: "POST", path: quotePath(fresh, "/save"),
			headers: []string{"Idempotency-Key", k}, status: 400, code: "invalid_idempotency_key", field: "Idempotency-Key"})
	}
	e.runHostile(t, cases)

	// SQL metacharacters that are printable ASCII make a valid key, kept
	// as it is: the same key replays.
	key := `'%_\;--` + e.sfx
	first := e.must(http.StatusOK, "POST", quotePath(fresh, "/save"), nil, "Idempotency-Key", key)
	e.sameAnswer(first, e.do("POST", quotePath(fresh, "/save"), e.alex, nil, "Idempotency-Key", key))
	// A hostile X-Request-ID is not echoed nor stored: the request gets an
	// id of its own.
	for _, id := range []string{"id'; DROP TABLE events; --", "😀", "\u202eid", strings.Repeat("i", 129)} {
		r := e.must(http.StatusOK, "GET", quotePath(fresh, "/preview"), nil, "X-Request-ID", id)
		if got := r.header.Get("X-Request-ID"); got == id || uuid.Validate(got) != nil {
			t.Errorf("X-Request-ID %q came back as %q, want a new UUID", short(id), got)
		}
	}

	// Names with unicode, control characters and SQL metacharacters are
	// kept byte for byte, and searched for literally: % and _ match
	// themselves, not any text.
	find := func(q string) []string {
		t.Helper()
		r := e.must(http.StatusOK, "GET", "/v1/customers?limit=500&q="+url.QueryEscape(q), nil)
		var names []string
		for _, c := range e.list(r.body, "customers") {
			if n := str(e.get(c, "name")); strings.HasSuffix(n, e.token) {
				names = append(names, strings.TrimSuffix(n, " "+e.token))
			}
		}
		return names
	}
	for q, want := range map[string][]string{
		"😀":                      {hostileNames[0]},
		"ünïcødé":                {hostileNames[0]},
		"\u202ertl":              {hostileNames[1]},
		"%":                      {hostileNames[2]},
		"_":                      {hostileNames[2]},
		`\`:                      {hostileNames[2]},
		"100% pure_water \\ co":  {hostileNames[2]},
		"'; drop table events; ": {hostileNames[3]},
		"\u200bwidth\u200d":      {hostileNames[4]},
		"zerowidth":              nil, // the zero-width space is a character
		"o'brien%":               nil,
		"1_0":                    nil,
	} {
		if got := find(q); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("q=%q found %q, want %q", q, got, want)
		}
	}
	for i, n := range hostileNames {
		id := fmt.Sprintf("cust-extra-%d-%s", i, e.sfx)
		c := e.customer(id)
		if got := str(c["name"]); got != n+" "+e.token {
			t.Errorf("customer %s: name %q, want %q", id, got, n+" "+e.token)
		}
		quote := e.open(id)
		r := e.must(http.StatusOK, "GET", quotePath(quote, "/preview"), nil)
		if got := str(e.get(r.body, "customer", "name")); got != n+" "+e.token {
			t.Errorf("quote on %s: customer name %q, want %q", id, got, n+" "+e.token)
		}
	}
}

// TestHostilePaths: path parameters that are not ids.
func TestHostilePaths(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	long := strings.Repeat("a", 100<<10)
	seats := map[string]any{"product_code": "EMAIL-SEC", "total_seats": 700}
	var cases []hostileCase
	for _, id := range []string{
		"not-a-uuid", "..%2f", "..%2F..%2Fcustomers", "%2e%2e", "%252e%252e%252f", "..%5c..%5c", "%00", "%ff", "%c0%ae%c0%ae",
		"%27%3B%20DROP%20TABLE%20events%3B%20--", "%25", "_", "%5C",
		uuid.Nil.String(), uuid.NewString(), strings.ToUpper(uuid.NewString()), quote + "0", quote[:35], quote + "%00",
		strings.Repeat("a", 10000), long,
	} {
		cases = append(cases,
			hostileCase{name: "preview of " + short(id), method: "GET", path: quotePath(id, "/preview"), status: 404, code: "not_found"},
			hostileCase{name: "summary of " + short(id), method: "GET", path: quotePath(id, "/summary"), status: 404, code: "not_found"},
			hostileCase{name: "events of " + short(id), method: "GET", path: quotePath(id, "/events"), status: 404, code: "not_found"},
			hostileCase{name: "seats of " + short(id), method: "PUT", path: quotePath(id, "/seats"), body: seats, status: 404, code: "not_found"},
			hostileCase{name: "submit " + short(id), method: "POST", path: quotePath(id, "/submit"), status: 404, code: "not_found"},
			hostileCase{name: "remove a product of " + short(id), method: "DELETE", path: quotePath(id, "/products/AWARENESS"), status: 404, code: "not_found"},
			hostileCase{name: "customer " + short(id), method: "GET", path: "/v1/customers/" + id, status: 404, code: "not_found"},
			hostileCase{name: "quotes of the customer " + short(id), method: "GET", path: "/v1/customers/" + id + "/change-quotes", status: 404, code: "not_found"},
			hostileCase{name: "open on the customer " + short(id), method: "POST", path: "/v1/customers/" + id + "/change-quotes", status: 404, code: "not_found"},
		)
	}
	for _, code := range []string{"..%2f", "%2e%2e", "%00", "%ff", "%27%3B%20DROP%20TABLE%20events%3B%20--", "%25", "_", long} {
		status, problem := 422, "product_not_added"
		if code == "%00" || code == "%ff" {
			status, problem = 404, "not_found" // PostgreSQL text cannot hold it: the path names nothing
		}
		cases = append(cases, hostileCase{name: "remove the product " + short(code), method: "DELETE", path: quotePath(quote, "/products/"+code), status: status, code: problem})
	}
	e.runHostile(t, cases)
	if n := e.eventCount(quote); n != 1 {
		t.Errorf("the quote has %d events, want 1", n)
	}
}

// TestAsOfTheZeroTime: the preview as of 0001-01-01T00:00:00Z is the quote
// as it stood then: it did not exist (404). The zero time.Time is also
// what eventstore.LoadOptions reads as "no time limit", so the handler
// answers the quote as it is now.
func TestAsOfTheZeroTime(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.raised()
	for _, at := range []string{"0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000001Z", "1970-01-01T00:00:00Z", "0001-01-01T01:00:00+01:00"} {
		r := e.do("GET", quotePath(quote, "/preview?as_of="+url.QueryEscape(at)), e.alex, nil)
		e.wantProblem(r, http.StatusNotFound, "not_found")
	}
}

// TestIfMatchComparesTagsExactly: If-Match compares entity tags strongly,
// octet by octet (RFC 9110, 13.1.1): "+1" and "01" are not the ETag "1"
// of a quote at version 1, so a command sent with them must not run.
// Refusing them as malformed (400) or as not matching (412) are both
// right; running the command is not.
func TestIfMatchComparesTagsExactly(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, tag := range []string{`"+1"`, `"01"`, `"0001"`, `"+0001"`, `"-0"`, `"1`, `1"`, `""1""`} {
		quote := e.open(e.contoso) // ETag "1"
		r := e.do("PUT", quotePath(quote, "/seats"), e.alex, map[string]any{"product_code": "EMAIL-SEC", "total_seats": 700}, "If-Match", tag)
		if r.status != http.StatusBadRequest && r.status != http.StatusPreconditionFailed {
			t.Errorf("If-Match %s on a quote whose ETag is \"1\": %s, want 400 invalid_if_match or 412 precondition_failed", tag, r)
		}
		if n := e.eventCount(quote); n != 1 {
			t.Errorf("If-Match %s: the command ran (%d events, want 1)", tag, n)
		}
	}
}
