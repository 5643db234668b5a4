package handlers_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestIsolation: a user of another MSP gets 404 on every /v1 route that
// names one of Northwind's customers or quotes, sees none of them in lists,
// and changes nothing.
func TestIsolation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.raised()
	e.must(http.StatusOK, "POST", quotePath(quote, "/products"), map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 700})
	e.ready(quote) // every command below would succeed for its owner
	before := e.eventCount(quote)

	// What each route is called with; every /v1 route must be here.
	bodies := map[string]any{
		"POST /v1/change-quotes/{quote_id}/products":         map[string]any{"product_code": "DMARC", "term_type": "12 Month", "seats": 2},
		"PUT /v1/change-quotes/{quote_id}/seats":             map[string]any{"product_code": "EMAIL-SEC", "total_seats": 750},
		"POST /v1/change-quotes/{quote_id}/acknowledgements": acks(true, true),
	}
	public := map[string]bool{"GET /v1/catalog/products": true, "GET /v1/customers": true}
	routes := 0
	for _, rt := range e.srv.Routes() {
		method, pattern, _ := strings.Cut(rt, " ")
		if !strings.HasPrefix(pattern, "/v1/") {
			continue
		}
		routes++
		n := routes
		path := strings.NewReplacer("{customer_id}", e.contoso, "{quote_id}", quote, "{product_code}", "AWARENESS").Replace(pattern)
		if strings.Contains(path, "{") {
			t.Errorf("route %s: a path parameter this test does not know", rt)
			continue
		}
		t.Run(rt, func(t *testing.T) {
			e := e.on(t)
			r := e.do(method, path, e.kim, bodies[rt], "Idempotency-Key", "iso-"+strconv.Itoa(n))
			switch {
			case public[rt]:
				if r.status != http.StatusOK {
					t.Errorf("%s", r)
				}
				if strings.Contains(string(r.raw), e.northwind) || strings.Contains(string(r.raw), e.contoso) ||
					strings.Contains(string(r.raw), e.adatum) || strings.Contains(string(r.raw), e.street) {
					t.Errorf("another MSP sees Northwind's customers: %s", r.raw)
				}
			default:
				e.wantProblem(r, http.StatusNotFound, "not_found")
				if strings.Contains(str(r.body["detail"]), northwindName) {
					t.Errorf("the problem names Northwind: %s", r.raw)
				}
			}
			// The time-travelling preview is another code path.
			if rt == "GET /v1/change-quotes/{quote_id}/preview" {
				for _, q := range []string{"?as_of_version=1", "?as_of=2100-01-01T00:00:00Z"} {
					e.wantProblem(e.do("GET", path+q, e.kim, nil), http.StatusNotFound, "not_found")
				}
			}
		})
	}
	if routes != 17 {
		t.Errorf("%d /v1 routes, want the 16 of API.md and GET /v1/change-quotes/{quote_id}", routes)
	}

	// Kim lists Tailspin's customer only.
	r := e.do("GET", "/v1/customers", e.kim, nil)
	listed := e.list(r.body, "customers")
	if len(listed) != 1 || str(e.get(listed[0], "id")) != e.fabrikam {
		t.Errorf("Kim lists %s, want Fabrikam alone", str(listed))
	}
	r = e.do("GET", "/v1/customers?q="+e.token, e.kim, nil)
	if n := len(e.list(r.body, "customers")); n != 1 {
		t.Errorf("Kim's search for this test's customers finds %d, want Fabrikam alone", n)
	}
	// And Alex cannot reach Tailspin's customer either.
	e.wantProblem(e.do("GET", "/v1/customers/"+e.fabrikam, e.alex, nil), http.StatusNotFound, "not_found")
	e.wantProblem(e.do("POST", "/v1/customers/"+e.fabrikam+"/change-quotes", e.alex, nil), http.StatusNotFound, "not_found")
	e.wantProblem(e.do("GET", "/v1/customers/"+e.fabrikam+"/change-quotes", e.alex, nil), http.StatusNotFound, "not_found")

	// Nothing changed.
	if n := e.eventCount(quote); n != before {
		t.Errorf("another MSP's commands appended: %d events, want %d", n, before)
	}
	if got := e.quotes(e.contoso, ""); len(got) != 1 {
		t.Errorf("Contoso has %d quotes, want 1", len(got))
	}
	e.wantFields("Contoso", e.customer(e.contoso), map[string]string{"version": "1", "total_users": "682"})
	// Sam, of the same MSP, sees the quote.
	r = e.do("GET", quotePath(quote, "/summary"), e.sam, nil)
	if r.status != http.StatusOK {
		t.Errorf("Sam reads Northwind's quote: %s", r)
	}
}
