package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestProblems answers every status and code of API.md at least once (but
// version_conflict, which needs two writers racing inside one command, and
// 503, which needs the database down). A refused command appends nothing.
func TestProblems(t *testing.T) {
	t.Parallel()
	e := setup(t)

	// Quotes in the states the cases need.
	fresh := e.open(e.contoso) // v1, changes nothing
	edited := e.raised()       // v2, not reviewed
	e.must(http.StatusOK, "PUT", quotePath(edited, "/seats"), map[string]any{"product_code": "EMAIL-SEC", "total_seats": 705},
		"Idempotency-Key", "reuse-"+e.sfx) // v3
	reviewed := e.raised()
	e.must(http.StatusOK, "POST", quotePath(reviewed, "/review"), nil)
	cancelled := e.open(e.contoso)
	e.must(http.StatusOK, "POST", quotePath(cancelled, "/cancel"), nil)
	won, lost := e.open(e.adatum), e.open(e.adatum)
	for _, q := range []string{won, lost} {
		e.must(http.StatusOK, "PUT", quotePath(q, "/seats"), map[string]any{"product_code": "EMAIL-SEC", "total_seats": 150})
		e.ready(q)
	}
	e.must(http.StatusOK, "POST", quotePath(won, "/submit"), nil)

	seats := func(code string, n any) map[string]any { return map[string]any{"product_code": code, "total_seats": n} }
	add := func(code, term string, n any) map[string]any {
		return map[string]any{"product_code": code, "term_type": term, "seats": n}
	}
	big := `{"product_code":"EMAIL-SEC","total_seats":700,"pad":"` + strings.Repeat("x", 64<<10) + `"}`
	unknownQuote := uuid.NewString()

	cases := []struct {
		name         string
		method, path string
		key          string // "-" for none; u-alex's when empty
		body         any
		headers      []string
		status       int
		code, field  string
		quote        string // whose events must not change
		allow        string // the Allow header of a 405
	}{
		// 400
		{name: "malformed JSON", method: "PUT", path: quotePath(fresh, "/seats"), body: `{"product_code":`, status: 400, code: "malformed_json", quote: fresh},
		{name: "data after the object", method: "PUT", path: quotePath(fresh, "/seats"), body: `{"product_code":"EMAIL-SEC","total_seats":700} {}`, status: 400, code: "malformed_json", quote: fresh},
		{name: "not an object", method: "POST", path: quotePath(fresh, "/save"), body: `"save"`, status: 400, code: "invalid_field", quote: fresh},
		{name: "unknown field", method: "PUT", path: quotePath(fresh, "/seats"), body: `{"product_code":"EMAIL-SEC","total_seats":700,"seat":1}`, status: 400, code: "unknown_field", field: "seat", quote: fresh},
		{name: "unknown field in a command without body", method: "POST", path: quotePath(fresh, "/save"), body: `{"now":true}`, status: 400, code: "unknown_field", field: "now", quote: fresh},
		{name: "seats as a string", method: "PUT", path: quotePath(fresh, "/seats"), body: seats("EMAIL-SEC", "700"), status: 400, code: "invalid_field", field: "total_seats", quote: fresh},
		{name: "seats as a fraction", method: "POST", path: quotePath(fresh, "/products"), body: add("DMARC", "12 Month", 1.5), status: 400, code: "invalid_field", field: "seats", quote: fresh},
		{name: "acknowledgement as a string", method: "POST", path: quotePath(reviewed, "/acknowledgements"), body: `{"msa_governs_order":"yes","authorized_to_order":true}`, status: 400, code: "invalid_field", field: "msa_governs_order", quote: reviewed},
		{name: "missing total_seats", method: "PUT", path: quotePath(fresh, "/seats"), body: map[string]any{"product_code": "EMAIL-SEC"}, status: 400, code: "missing_field", field: "total_seats", quote: fresh},
		{name: "missing product_code", method: "PUT", path: quotePath(fresh, "/seats"), body: map[string]any{"total_seats": 700}, status: 400, code: "missing_field", field: "product_code", quote: fresh},
		{name: "missing seats", method: "POST", path: quotePath(fresh, "/products"), body: map[string]any{"product_code": "DMARC", "term_type": "12 Month"}, status: 400, code: "missing_field", field: "seats", quote: fresh},
		{name: "null term_type", method: "POST", path: quotePath(fresh, "/products"), body: `{"product_code":"DMARC","term_type":null,"seats":1}`, status: 400, code: "missing_field", field: "term_type", quote: fresh},
		{name: "limit 0", method: "GET", path: "/v1/customers?limit=0", status: 400, code: "invalid_parameter", field: "limit"},
		{name: "limit not a number", method: "GET", path: "/v1/customers?limit=ten", status: 400, code: "invalid_parameter", field: "limit"},
		{name: "limit too large", method: "GET", path: "/v1/customers?limit=501", status: 400, code: "invalid_parameter", field: "limit"},
		{name: "two letters", method: "GET", path: "/v1/customers?letter=AB", status: 400, code: "invalid_parameter", field: "letter"},
		{name: "a digit as letter", method: "GET", path: "/v1/customers?letter=1", status: 400, code: "invalid_parameter", field: "letter"},
		{name: "unknown status", method: "GET", path: "/v1/customers/" + e.contoso + "/change-quotes?status=open", status: 400, code: "invalid_parameter", field: "status"},
		{name: "as_of_version 0", method: "GET", path: quotePath(edited, "/preview?as_of_version=0"), status: 400, code: "invalid_parameter", field: "as_of_version"},
		{name: "as_of_version not a number", method: "GET", path: quotePath(edited, "/preview?as_of_version=two"), status: 400, code: "invalid_parameter", field: "as_of_version"},
		{name: "as_of not a time", method: "GET", path: quotePath(edited, "/preview?as_of=yesterday"), status: 400, code: "invalid_parameter", field: "as_of"},
		{name: "as_of and as_of_version", method: "GET", path: quotePath(edited, "/preview?as_of_version=1&as_of=2026-01-01T00:00:00Z"), status: 400, code: "invalid_parameter", field: "as_of"},
		{name: "invalid cursor", method: "GET", path: "/v1/customers?cursor=not-a-cursor", status: 400, code: "invalid_cursor", field: "cursor"},
		{name: "invalid cursor, JSON of another shape", method: "GET", path: "/v1/customers?cursor=WyJhIl0", status: 400, code: "invalid_cursor", field: "cursor"}, // ["a"]
		{name: "If-Match not a version", method: "PUT", path: quotePath(fresh, "/seats"), body: seats("EMAIL-SEC", 700), headers: []string{"If-Match", `"abc"`}, status: 400, code: "invalid_if_match", field: "If-Match", quote: fresh},
		{name: "Idempotency-Key with a space", method: "POST", path: quotePath(fresh, "/save"), headers: []string{"Idempotency-Key", "a b"}, status: 400, code: "invalid_idempotency_key", quote: fresh},

		// 401
		{name: "no key", method: "GET", path: "/v1/customers", key: "-", status: 401, code: "unauthorized"},
		{name: "no key on a command", method: "POST", path: quotePath(fresh, "/save"), key: "-", status: 401, code: "unauthorized", quote: fresh},
		{name: "unknown key", method: "GET", path: "/v1/customers", key: "-", headers: []string{"Authorization", "Bearer nw-nobody-0000000000"}, status: 401, code: "unauthorized"},
		{name: "wrong scheme", method: "GET", path: "/v1/customers", key: "-", headers: []string{"Authorization", "Basic " + e.alex}, status: 401, code: "unauthorized"},
		{name: "empty bearer", method: "GET", path: "/v1/customers", key: "-", headers: []string{"Authorization", "Bearer "}, status: 401, code: "unauthorized"},
		{name: "key without scheme", method: "GET", path: "/v1/customers", key: "-", headers: []string{"Authorization", e.alex}, status: 401, code: "unauthorized"},

		// 404
		{name: "unknown customer", method: "GET", path: "/v1/customers/cust-nobody-" + e.sfx, status: 404, code: "not_found"},
		{name: "quotes of an unknown customer", method: "GET", path: "/v1/customers/cust-nobody-" + e.sfx + "/change-quotes", status: 404, code: "not_found"},
		{name: "quote for an unknown customer", method: "POST", path: "/v1/customers/cust-nobody-" + e.sfx + "/change-quotes", status: 404, code: "not_found"},
		{name: "a quote id is no customer", method: "GET", path: "/v1/customers/" + fresh, status: 404, code: "not_found"},
		{name: "no quote opens on a quote", method: "POST", path: "/v1/customers/" + fresh + "/change-quotes", status: 404, code: "not_found"},
		{name: "unknown quote", method: "GET", path: quotePath(unknownQuote, "/preview"), status: 404, code: "not_found"},
		{name: "unknown quote's summary", method: "GET", path: quotePath(unknownQuote, "/summary"), status: 404, code: "not_found"},
		{name: "unknown quote's events", method: "GET", path: quotePath(unknownQuote, "/events"), status: 404, code: "not_found"},
		{name: "unknown quote as of a version", method: "GET", path: quotePath(unknownQuote, "/preview?as_of_version=1"), status: 404, code: "not_found"},
		{name: "command on an unknown quote", method: "POST", path: quotePath(unknownQuote, "/save"), status: 404, code: "not_found"},
		{name: "non-UUID quote", method: "GET", path: quotePath("q-123", "/preview"), status: 404, code: "not_found"},
		{name: "command on a non-UUID quote", method: "PUT", path: quotePath("q-123", "/seats"), body: seats("EMAIL-SEC", 700), status: 404, code: "not_found"},
		{name: "a customer id is no quote", method: "GET", path: quotePath(e.contoso, "/events"), status: 404, code: "not_found"},
		{name: "unknown path", method: "GET", path: "/v1/nothing-here", status: 404, code: "not_found"},
		{name: "unknown path without a key", method: "GET", path: "/nothing-here", key: "-", status: 404, code: "not_found"},

		// 405
		{name: "DELETE the customer list", method: "DELETE", path: "/v1/customers", status: 405, code: "method_not_allowed", allow: "GET"},
		{name: "GET a command", method: "GET", path: quotePath(fresh, "/submit"), status: 405, code: "method_not_allowed", allow: "POST", quote: fresh},
		{name: "PATCH the seats", method: "PATCH", path: quotePath(fresh, "/seats"), body: seats("EMAIL-SEC", 700), status: 405, code: "method_not_allowed", allow: "PUT", quote: fresh},
		{name: "PUT the quotes of a customer", method: "PUT", path: "/v1/customers/" + e.contoso + "/change-quotes", status: 405, code: "method_not_allowed", allow: "GET, POST"},
		{name: "POST a product path", method: "POST", path: quotePath(fresh, "/products/DMARC"), status: 405, code: "method_not_allowed", allow: "DELETE", quote: fresh},

		// 409
		{name: "command on a cancelled quote", method: "POST", path: quotePath(cancelled, "/products"), body: add("DMARC", "12 Month", 1), status: 409, code: "quote_closed", quote: cancelled},
		{name: "submit on a changed subscription", method: "POST", path: quotePath(lost, "/submit"), status: 409, code: "baseline_changed", quote: lost},
		{name: "summary before a review", method: "GET", path: quotePath(edited, "/summary"), status: 409, code: "not_reviewed"},

		// 412
		{name: "stale If-Match", method: "PUT", path: quotePath(fresh, "/seats"), body: seats("EMAIL-SEC", 700), headers: []string{"If-Match", `"5"`}, status: 412, code: "precondition_failed", quote: fresh},

		// 413
		{name: "body over 64 KiB", method: "PUT", path: quotePath(fresh, "/seats"), body: big, status: 413, code: "body_too_large", quote: fresh},

		// 415
		{name: "text body", method: "POST", path: quotePath(fresh, "/save"), body: `{}`, headers: []string{"Content-Type", "text/plain"}, status: 415, code: "unsupported_media_type", quote: fresh},
		{name: "form body", method: "PUT", path: quotePath(fresh, "/seats"), body: `product_code=EMAIL-SEC&total_seats=700`, headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, code: "unsupported_media_type", quote: fresh},

		// 422
		{name: "fewer seats", method: "PUT", path: quotePath(fresh, "/seats"), body: seats("EMAIL-SEC", 681), status: 422, code: "seats_decrease", quote: fresh},
		{name: "negative seats", method: "PUT", path: quotePath(fresh, "/seats"), body: seats("EMAIL-SEC", -1), status: 422, code: "seats_decrease", quote: fresh},
		{name: "too many seats", method: "PUT", path: quotePath(fresh, "/seats"), body: seats("EMAIL-SEC", 10_000_001), status: 422, code: "invalid_seats", quote: fresh},
		{name: "an added product without seats", method: "POST", path: quotePath(fresh, "/products"), body: add("AWARENESS", "12 Month", 0), status: 422, code: "invalid_seats", quote: fresh},
		{name: "add an unknown product", method: "POST", path: quotePath(fresh, "/products"), body: add("NOPE", "12 Month", 1), status: 422, code: "unknown_product", quote: fresh},
		{name: "seats of an unknown product", method: "PUT", path: quotePath(fresh, "/seats"), body: seats("NOPE", 1), status: 422, code: "unknown_product", quote: fresh},
		{name: "a term not offered", method: "POST", path: quotePath(fresh, "/products"), body: add("AWARENESS", "Monthly", 10), status: 422, code: "unknown_term_type", quote: fresh},
		{name: "add a product of the subscription", method: "POST", path: quotePath(fresh, "/products"), body: add("EMAIL-SEC", "12 Month", 800), status: 422, code: "product_already_present", quote: fresh},
		{name: "seats of a product not subscribed", method: "PUT", path: quotePath(fresh, "/seats"), body: seats("DMARC", 2), status: 422, code: "product_not_on_subscription", quote: fresh},
		{name: "remove a product of the subscription", method: "DELETE", path: quotePath(fresh, "/products/EMAIL-SEC"), status: 422, code: "product_not_added", quote: fresh},
		{name: "remove a product not added", method: "DELETE", path: quotePath(fresh, "/products/DMARC"), status: 422, code: "product_not_added", quote: fresh},
		{name: "review without changes", method: "POST", path: quotePath(fresh, "/review"), status: 422, code: "nothing_to_review", quote: fresh},
		{name: "submit before a review", method: "POST", path: quotePath(edited, "/submit"), status: 422, code: "not_reviewed", quote: edited},
		{name: "acknowledge before a review", method: "POST", path: quotePath(edited, "/acknowledgements"), body: acks(true, true), status: 422, code: "not_reviewed", quote: edited},
		{name: "one acknowledgement", method: "POST", path: quotePath(reviewed, "/acknowledgements"), body: acks(true, false), status: 422, code: "acknowledgements_missing", quote: reviewed},
		{name: "the other acknowledgement", method: "POST", path: quotePath(reviewed, "/acknowledgements"), body: acks(false, true), status: 422, code: "acknowledgements_missing", quote: reviewed},
		{name: "no acknowledgements in the body", method: "POST", path: quotePath(reviewed, "/acknowledgements"), status: 422, code: "acknowledgements_missing", quote: reviewed},
		{name: "submit without acknowledgements", method: "POST", path: quotePath(reviewed, "/submit"), status: 422, code: "acknowledgements_missing", quote: reviewed},
		{name: "a key reused with another body", method: "PUT", path: quotePath(edited, "/seats"), body: seats("EMAIL-SEC", 710), headers: []string{"Idempotency-Key", "reuse-" + e.sfx}, status: 422, code: "idempotency_key_reused", field: "Idempotency-Key", quote: edited},
		{name: "a key reused on another path", method: "POST", path: quotePath(edited, "/save"), headers: []string{"Idempotency-Key", "reuse-" + e.sfx}, status: 422, code: "idempotency_key_reused", quote: edited},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.on(t)
			before := -1
			if c.quote != "" {
				before = e.eventCount(c.quote)
			}
			key := c.key
			switch key {
			case "":
				key = e.alex
			case "-":
				key = ""
			}
			r := e.do(c.method, c.path, key, c.body, c.headers...)
			e.wantProblem(r, c.status, c.code)
			if c.field != "" && str(r.body["field"]) != c.field {
				t.Errorf("field %s, want %s", str(r.body["field"]), c.field)
			}
			if c.status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			if c.allow != "" && r.header.Get("Allow") != c.allow {
				t.Errorf("Allow %q, want %q", r.header.Get("Allow"), c.allow)
			}
			if c.quote != "" {
				if n := e.eventCount(c.quote); n != before {
					t.Errorf("the refused request appended: %d events, want %d", n, before)
				}
			}
		})
	}

	// Refused requests opened no quote either.
	if got := e.quotes(e.contoso, ""); len(got) != 4 {
		t.Errorf("Contoso has %d quotes, want the 4 of this test", len(got))
	}
}

// on returns the env reporting to another test (a subtest).
func (e *env) on(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// TestBodies: what a command body may be.
func TestBodies(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	const json700 = `{"product_code":"EMAIL-SEC","total_seats":700}`

	// 64 KiB exactly is accepted; one byte more is not.
	padded := json700 + strings.Repeat(" ", 64<<10-len(json700))
	e.wantProblem(e.do("PUT", quotePath(quote, "/seats"), e.alex, padded+" "), http.StatusRequestEntityTooLarge, "body_too_large")
	r := e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), padded)
	e.wantFields("a body of 64 KiB", r.body, map[string]string{"version": "2"})

	// JSON media types, with parameters, or none said.
	e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), `{"product_code":"EMAIL-SEC","total_seats":701}`, "Content-Type", "application/json; charset=utf-8")
	e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), `{"product_code":"EMAIL-SEC","total_seats":702}`, "Content-Type", "application/merge-patch+json")
	e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), `{"product_code":"EMAIL-SEC","total_seats":703}`, "Content-Type", "")
	// A command without fields takes no body, an empty one, {} or null,
	// whatever the Content-Type of an empty body.
	e.must(http.StatusOK, "POST", quotePath(quote, "/save"), nil)
	e.must(http.StatusOK, "POST", quotePath(quote, "/save"), "", "Content-Type", "text/plain")
	e.must(http.StatusOK, "POST", quotePath(quote, "/save"), "{}")
	e.must(http.StatusOK, "POST", quotePath(quote, "/save"), "null")
	if n := e.eventCount(quote); n != 9 {
		t.Errorf("%d events, want 9", n)
	}
}

// TestFieldNamesAreExact: API.md refuses unknown fields; a field name in
// another case is not one of the contract's names.
func TestFieldNamesAreExact(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	for _, c := range []struct{ path, body, field string }{
		{"/seats", `{"product_code":"EMAIL-SEC","Total_Seats":700}`, "Total_Seats"},
		{"/products", `{"PRODUCT_CODE":"AWARENESS","term_type":"12 Month","seats":10}`, "PRODUCT_CODE"},
	} {
		method := map[string]string{"/seats": "PUT", "/products": "POST"}[c.path]
		r := e.do(method, quotePath(quote, c.path), e.alex, c.body)
		e.wantProblem(r, http.StatusBadRequest, "unknown_field")
		if str(r.body["field"]) != c.field {
			t.Errorf("%s: field %s, want %s", c.body, str(r.body["field"]), c.field)
		}
	}
	if n := e.eventCount(quote); n != 1 {
		t.Errorf("%d events, want 1: a body with misspelt field names ran", n)
	}
}
