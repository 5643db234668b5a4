package handlers_test

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestCustomerList: search, first letter, keyset pages, sorted by name.
func TestCustomerList(t *testing.T) {
	t.Parallel()
	// Besides the fixture's Contoso Ltd, Adatum Corporation and 1st Street
	// Dental: a lower-case name, a second digit, a name twice (pages must
	// not lose either), and the characters LIKE treats specially.
	e := setup(t, withCustomers("bravo Systems", "9 Lives Pet Care", "Contoso Ltd", "Zulu 100% Solar", "Under_score Inc"))
	name := func(base string) string { return base + " " + e.token }
	all := []string{
		name("1st Street Dental"), name("9 Lives Pet Care"), name("Adatum Corporation"), name("bravo Systems"),
		name("Contoso Ltd"), name("Contoso Ltd"), name("Under_score Inc"), name("Zulu 100% Solar"),
	}

	names := func(query string) ([]string, []string, any) {
		t.Helper()
		r := e.must(http.StatusOK, "GET", "/v1/customers"+query, nil)
		var ns, ids []string
		for _, c := range e.list(r.body, "customers") {
			ns = append(ns, str(e.get(c, "name")))
			ids = append(ids, str(e.get(c, "id")))
		}
		return ns, ids, r.body["next_cursor"]
	}
	want := func(query string, expected ...string) {
		t.Helper()
		got, _, next := names(query)
		if !slices.Equal(got, expected) {
			t.Errorf("%s: %q, want %q", query, got, expected)
		}
		if next != nil {
			t.Errorf("%s: next_cursor %s, want null", query, str(next))
		}
	}

	want("", all...) // the MSP's customers are this test's
	want("?q="+e.token, all...)
	want("?q="+url.QueryEscape(e.token[2:6]), all...) // anywhere in the name
	want("?q=STREET", name("1st Street Dental"))
	want("?q=sTrEeT+dEnTaL", name("1st Street Dental"))
	want("?q=contoso", name("Contoso Ltd"), name("Contoso Ltd"))
	want("?q=%25", name("Zulu 100% Solar")) // % is a character, not a wildcard
	want("?q=_", name("Under_score Inc"))   // so is _
	want("?q=nobody-" + e.sfx)              // nothing
	want("?letter=%23", name("1st Street Dental"), name("9 Lives Pet Care"))
	want("?letter=C", name("Contoso Ltd"), name("Contoso Ltd"))
	want("?letter=c", name("Contoso Ltd"), name("Contoso Ltd"))
	want("?letter=B", name("bravo Systems"))
	want("?letter=Q")
	want("?letter=C&q=ltd", name("Contoso Ltd"), name("Contoso Ltd"))

	r := e.must(http.StatusOK, "GET", "/v1/customers?q=nobody-"+e.sfx, nil)
	if str(r.body["customers"]) != "[]" {
		t.Errorf("an empty page lists %s, want []", str(r.body["customers"]))
	}

	// Walk the pages.
	walk := func(query string, limit int) []string {
		t.Helper()
		var got, ids []string
		cursor := ""
		for page := 0; ; page++ {
			if page > len(all)+1 {
				t.Fatalf("%s: the pages do not end", query)
			}
			q := url.Values{}
			if query != "" {
				parsed, _ := url.ParseQuery(query)
				q = parsed
			}
			q.Set("limit", strconv.Itoa(limit))
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			ns, is, next := names("?" + q.Encode())
			if len(ns) > limit || (next != nil && len(ns) != limit) {
				t.Errorf("%s page %d: %d customers, next %s", query, page, len(ns), str(next))
			}
			got, ids = append(got, ns...), append(ids, is...)
			if next == nil {
				break
			}
			cursor = str(next)
			if cursor == "" {
				t.Fatalf("%s: next_cursor %s", query, str(next))
			}
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Errorf("%s: %s is on two pages", query, id)
			}
			seen[id] = true
		}
		return got
	}
	for _, limit := range []int{1, 2, 3, 8, 9} {
		if got := walk("", limit); !slices.Equal(got, all) {
			t.Errorf("limit %d: pages give %q, want %q", limit, got, all)
		}
	}
	if got := walk("letter=C", 1); !slices.Equal(got, []string{name("Contoso Ltd"), name("Contoso Ltd")}) {
		t.Errorf("letter C by pages of 1: %q", got)
	}
	if got := walk("q=o", 2); !slices.Equal(got, []string{name("Adatum Corporation"), name("bravo Systems"), name("Contoso Ltd"), name("Contoso Ltd"), name("Under_score Inc"), name("Zulu 100% Solar")}) {
		t.Errorf("q=o by pages of 2: %q", got)
	}

	// A forged cursor is refused.
	e.wantProblem(e.do("GET", "/v1/customers?cursor="+uuid.NewString(), e.alex, nil), http.StatusBadRequest, "invalid_cursor")
}

// TestRequestID: every answer carries an X-Request-ID, the caller's when it
// is usable, and problems repeat it.
func TestRequestID(t *testing.T) {
	t.Parallel()
	e := setup(t)

	r := e.must(http.StatusOK, "GET", "/v1/customers", nil)
	generated := r.header.Get("X-Request-ID")
	if _, err := uuid.Parse(generated); err != nil {
		t.Errorf("generated X-Request-ID %q: %v", generated, err)
	}
	r = e.do("GET", "/v1/customers/cust-nobody", e.alex, nil)
	e.wantProblem(r, http.StatusNotFound, "not_found") // request_id == X-Request-ID
	if r.header.Get("X-Request-ID") == generated {
		t.Errorf("two requests got one id %q", generated)
	}
	if str(r.body["instance"]) != "/v1/customers/cust-nobody" {
		t.Errorf("instance %s", str(r.body["instance"]))
	}

	own := "rid-" + e.sfx
	r = e.do("GET", "/v1/customers/cust-nobody", e.alex, nil, "X-Request-ID", own)
	e.wantProblem(r, http.StatusNotFound, "not_found")
	if r.header.Get("X-Request-ID") != own || str(r.body["request_id"]) != own {
		t.Errorf("X-Request-ID %q, request_id %s, want %q", r.header.Get("X-Request-ID"), str(r.body["request_id"]), own)
	}
	// Problems before authentication and routing carry it too.
	for _, c := range []struct {
		method, path, key string
		status            int
		code              string
	}{
		{"GET", "/v1/customers", "", 401, "unauthorized"},
		{"GET", "/v1/nothing", e.alex, 404, "not_found"},
		{"DELETE", "/v1/customers", e.alex, 405, "method_not_allowed"},
	} {
		r = e.do(c.method, c.path, c.key, nil, "X-Request-ID", own)
		e.wantProblem(r, c.status, c.code)
		if str(r.body["request_id"]) != own {
			t.Errorf("%s: request_id %s, want %q", r, str(r.body["request_id"]), own)
		}
	}
	// An unusable id (a space, too long) is replaced.
	for _, bad := range []string{"has space", strings.Repeat("a", 129)} {
		r = e.do("GET", "/v1/customers/cust-nobody", e.alex, nil, "X-Request-ID", bad)
		e.wantProblem(r, http.StatusNotFound, "not_found")
		if id := r.header.Get("X-Request-ID"); id == bad || id == "" {
			t.Errorf("X-Request-ID %q was kept", id)
		}
	}
	// A command records the id as the correlation id.
	quote := e.open(e.contoso)
	r = e.must(http.StatusOK, "POST", quotePath(quote, "/save"), nil)
	ev := e.events(quote)
	if got := str(e.get(ev[1], "correlation_id")); got != r.header.Get("X-Request-ID") {
		t.Errorf("correlation_id %s, want the generated request id %s", got, r.header.Get("X-Request-ID"))
	}
}

// TestOperations: the endpoints that need no key.
func TestOperations(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, path := range []string{"/healthz", "/readyz", "/openapi.json", "/metrics"} {
		r := e.do("GET", path, "", nil)
		if r.status != http.StatusOK {
			t.Errorf("%s", r)
		}
		if r.header.Get("X-Request-ID") == "" {
			t.Errorf("%s: no X-Request-ID", path)
		}
	}
	r := e.do("GET", "/openapi.json", "", nil)
	if str(r.body["openapi"]) == "<nil>" {
		t.Errorf("/openapi.json has no openapi member")
	}
}
