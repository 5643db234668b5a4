package handlers_test

import (
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestSeedStory walks the fixture's story over HTTP: Contoso's 682 seats of
// EMAIL-SEC at 3.25 become 700 at the 700-seat tier price of 3.20.
func TestSeedStory(t *testing.T) {
	t.Parallel()
	e := setup(t)
	contosoName := e.names[e.contoso]

	// The catalog.
	r := e.must(http.StatusOK, "GET", "/v1/catalog/products", nil)
	products := e.list(r.body, "products")
	var codes []string
	for _, p := range products {
		codes = append(codes, str(e.get(p, "code")))
		if str(e.get(p, "code")) != "EMAIL-SEC" {
			continue
		}
		e.wantFields("EMAIL-SEC", p, map[string]string{
			"name": emailSecName, "per_user": "true", "currency": "USD",
			"term_types": `["Monthly","12 Month","36 Month"]`,
		})
		var found bool
		for _, tier := range e.list(p, "tiers") {
			if str(e.get(tier, "term_type")) == "12 Month" && str(e.get(tier, "min_seats")) == "700" {
				found = true
				e.wantFields("EMAIL-SEC tier", tier, map[string]string{"unit_price": "3.20"})
			}
		}
		if n := len(e.list(p, "tiers")); n != 7 || !found {
			t.Errorf("EMAIL-SEC has %d tiers (want 7), 12 Month from 700 found: %v", n, found)
		}
	}
	slices.Sort(codes)
	if want := []string{"ARCHIVE", "AWARENESS", "DMARC", "EMAIL-SEC"}; !slices.Equal(codes, want) {
		t.Errorf("catalog codes = %v, want %v", codes, want)
	}

	// Find Contoso, then read it.
	r = e.must(http.StatusOK, "GET", "/v1/customers?q=contoso", nil)
	found := e.list(r.body, "customers")
	if len(found) != 1 {
		t.Fatalf("q=contoso found %s, want Contoso alone", str(found))
	}
	e.wantFields("listed Contoso", found[0], map[string]string{
		"id": e.contoso, "name": contosoName, "total_users": "682", "monthly_total": "3341.80",
	})
	if str(r.body["next_cursor"]) != "<nil>" {
		t.Errorf("next_cursor = %s, want null", str(r.body["next_cursor"]))
	}
	c := e.customer(e.contoso)
	e.wantFields("Contoso", c, map[string]string{
		"id": e.contoso, "name": contosoName, "msp_id": e.northwind, "total_users": "682",
		"version": "1", "currency": "USD", "monthly_total": "3341.80",
	})
	wantLines := []map[string]string{
		{"product_code": "EMAIL-SEC", "product_name": emailSecName, "term_type": "12 Month", "seats": "682", "unit_price": "3.25", "monthly_payment": "2216.50"},
		{"product_code": "ARCHIVE", "product_name": archiveName, "term_type": "12 Month", "seats": "682", "unit_price": "1.65", "monthly_payment": "1125.30"},
	}
	if lines := e.list(c, "lines"); len(lines) != 2 {
		t.Errorf("Contoso lines = %s", str(lines))
	} else {
		for i, w := range wantLines {
			e.wantFields("Contoso line "+strconv.Itoa(i), lines[i], w)
		}
	}

	// Every command gets its own request id, to find again in the events.
	reqIDs := []string{}
	command := func(status int, method, path string, body any) reply {
		t.Helper()
		id := "story-" + strconv.Itoa(len(reqIDs)+1) + "-" + e.sfx
		reqIDs = append(reqIDs, id)
		r := e.must(status, method, path, body, "X-Request-ID", id)
		if got := r.header.Get("X-Request-ID"); got != id {
			t.Errorf("%s %s: X-Request-ID %q, want %q echoed", method, path, got, id)
		}
		return r
	}

	// Open a quote.
	r = command(http.StatusCreated, "POST", "/v1/customers/"+e.contoso+"/change-quotes", nil)
	quote := str(r.body["quote_id"])
	if loc := r.header.Get("Location"); loc != "/v1/change-quotes/"+quote {
		t.Errorf("Location = %q, want /v1/change-quotes/%s", loc, quote)
	}
	if r.header.Get("ETag") != `"1"` || str(r.body["version"]) != "1" {
		t.Errorf("open: ETag %s, body %s; want version 1", r.header.Get("ETag"), r.raw)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("open: Content-Type %q", ct)
	}

	// Raise EMAIL-SEC to 700 seats in total.
	r = command(http.StatusOK, "PUT", quotePath(quote, "/seats"), map[string]any{"product_code": "EMAIL-SEC", "total_seats": 700})
	e.wantFields("seats", r.body, map[string]string{"quote_id": quote, "version": "2"})
	if r.header.Get("ETag") != `"2"` {
		t.Errorf("seats: ETag %s", r.header.Get("ETag"))
	}

	// The preview.
	r = e.must(http.StatusOK, "GET", quotePath(quote, "/preview"), nil)
	if r.header.Get("ETag") != `"2"` {
		t.Errorf("preview: ETag %s", r.header.Get("ETag"))
	}
	p := r.body
	e.wantFields("preview", p, map[string]string{
		"quote_id": quote, "status": "draft", "version": "2", "currency": "USD",
		"prior_monthly_total": "3341.80", "new_monthly_total": "3365.30", "monthly_difference": "23.50",
		"added_products": "[]",
	})
	e.wantFields("preview customer", e.get(p, "customer"), map[string]string{"id": e.contoso, "name": contosoName})
	changes := e.list(p, "changes_to_existing_products")
	if len(changes) != 2 {
		t.Fatalf("changes_to_existing_products = %s, want the -682 and +700 lines", str(changes))
	}
	e.wantFields("change -682", changes[0], map[string]string{
		"product_code": "EMAIL-SEC", "product_name": emailSecName, "term_type": "12 Month",
		"quantity": "-682", "unit_price": "3.25", "monthly_payment": "-2216.50",
	})
	e.wantFields("change +700", changes[1], map[string]string{
		"product_code": "EMAIL-SEC", "product_name": emailSecName, "term_type": "12 Month",
		"quantity": "700", "unit_price": "3.20", "monthly_payment": "2240.00",
	})
	if cur := e.list(p, "current_products"); len(cur) != 2 {
		t.Errorf("current_products = %s", str(cur))
	} else {
		for i, w := range wantLines {
			e.wantFields("current product "+strconv.Itoa(i), cur[i], w)
		}
	}
	// GET /v1/change-quotes/{id} is the preview too.
	if alias := e.must(http.StatusOK, "GET", quotePath(quote), nil); !reflect.DeepEqual(alias.body, p) {
		t.Errorf("GET /v1/change-quotes/{id} = %s, want the preview %s", alias.raw, r.raw)
	}

	// Save it; it is listed as saved.
	r = command(http.StatusOK, "POST", quotePath(quote, "/save"), nil)
	e.wantFields("save", r.body, map[string]string{"quote_id": quote, "version": "3", "status": "saved"})
	saved := e.quotes(e.contoso, "?status=saved")
	if len(saved) != 1 {
		t.Fatalf("saved quotes = %s, want this one", str(saved))
	}
	e.wantFields("listed quote", saved[0], map[string]string{
		"quote_id": quote, "status": "saved", "version": "3", "new_monthly_total": "3365.30",
	})
	if at, err := time.Parse(time.RFC3339Nano, str(e.get(saved[0], "updated_at"))); err != nil || at.IsZero() {
		t.Errorf("updated_at = %s: %v", str(e.get(saved[0], "updated_at")), err)
	}
	if drafts := e.quotes(e.contoso, "?status=draft"); len(drafts) != 0 {
		t.Errorf("draft quotes = %s, want none", str(drafts))
	}

	// Review: the answer is the Change Order Summary.
	r = command(http.StatusOK, "POST", quotePath(quote, "/review"), nil)
	review := r.body
	if r.header.Get("ETag") != `"4"` {
		t.Errorf("review: ETag %s", r.header.Get("ETag"))
	}
	e.wantFields("summary", review, map[string]string{
		"quote_id": quote, "status": "reviewed", "version": "4", "currency": "USD",
		"company_name": contosoName, "total_users": "700",
		"prior_monthly_total": "3341.80", "new_monthly_total": "3365.30",
		"acknowledgements": "<nil>", "submitted_at": "<nil>",
	})
	e.wantFields("summary msp", e.get(review, "msp"), map[string]string{"id": e.northwind, "name": northwindName})
	if _, err := time.Parse(time.RFC3339Nano, str(e.get(review, "reviewed_at"))); err != nil {
		t.Errorf("reviewed_at: %v", err)
	}
	if lines := e.list(review, "lines"); len(lines) != 2 {
		t.Errorf("summary lines = %s", str(lines))
	} else {
		e.wantFields("summary EMAIL-SEC", lines[0], map[string]string{
			"product_code": "EMAIL-SEC", "product": emailSecName, "term_type": "12 Month",
			"prior_quantity": "682", "current_quantity": "700", "prior_unit_price": "3.25", "current_unit_price": "3.20",
			"prior_payment": "2216.50", "current_payment": "2240.00",
		})
		e.wantFields("summary ARCHIVE", lines[1], map[string]string{
			"product_code": "ARCHIVE", "product": archiveName, "term_type": "12 Month",
			"prior_quantity": "682", "current_quantity": "682", "prior_unit_price": "1.65", "current_unit_price": "1.65",
			"prior_payment": "1125.30", "current_payment": "1125.30",
		})
	}
	r = e.must(http.StatusOK, "GET", quotePath(quote, "/summary"), nil)
	if !reflect.DeepEqual(r.body, review) {
		t.Errorf("GET summary = %s\nwant the review's answer %s", r.raw, str(review))
	}
	if r.header.Get("ETag") != `"4"` {
		t.Errorf("summary: ETag %s", r.header.Get("ETag"))
	}

	// Acknowledge, then submit.
	r = command(http.StatusOK, "POST", quotePath(quote, "/acknowledgements"), acks(true, true))
	e.wantFields("acknowledgements", r.body, map[string]string{"quote_id": quote, "version": "5", "status": "reviewed"})
	r = e.must(http.StatusOK, "GET", quotePath(quote, "/summary"), nil)
	e.wantFields("acknowledged", e.get(r.body, "acknowledgements"), map[string]string{
		"msa_governs_order": "true", "authorized_to_order": "true", "by": "u-alex",
	})
	r = command(http.StatusOK, "POST", quotePath(quote, "/submit"), nil)
	if len(r.body) != 3 {
		t.Errorf("submit answered %s, want exactly quote_id, version, status", r.raw)
	}
	e.wantFields("submit", r.body, map[string]string{"quote_id": quote, "version": "6", "status": "submitted"})
	if r.header.Get("ETag") != `"6"` {
		t.Errorf("submit: ETag %s", r.header.Get("ETag"))
	}

	// The customer shows the order at once.
	c = e.customer(e.contoso)
	e.wantFields("Contoso after the order", c, map[string]string{
		"total_users": "700", "monthly_total": "3365.30", "version": "2",
	})
	e.wantFields("Contoso's EMAIL-SEC after the order", e.get(c, "lines", 0), map[string]string{
		"product_code": "EMAIL-SEC", "seats": "700", "unit_price": "3.20", "monthly_payment": "2240.00",
	})
	r = e.must(http.StatusOK, "GET", "/v1/customers?q="+e.token+"&letter=C", nil)
	if listed := e.list(r.body, "customers"); len(listed) != 1 {
		t.Errorf("letter C lists %s", str(listed))
	} else {
		e.wantFields("listed Contoso after the order", listed[0], map[string]string{"total_users": "700", "monthly_total": "3365.30"})
	}
	r = e.must(http.StatusOK, "GET", quotePath(quote, "/summary"), nil)
	if at, err := time.Parse(time.RFC3339Nano, str(r.body["submitted_at"])); err != nil || at.IsZero() {
		t.Errorf("summary after submit: submitted_at %s", str(r.body["submitted_at"]))
	}
	e.wantFields("summary after submit", r.body, map[string]string{"status": "submitted", "version": "6"})

	// A new quote starts from the new subscription.
	next := e.open(e.contoso)
	r = e.must(http.StatusOK, "GET", quotePath(next, "/preview"), nil)
	e.wantFields("next quote", r.body, map[string]string{"prior_monthly_total": "3365.30", "version": "1", "status": "draft"})
	e.wantFields("next quote's EMAIL-SEC", e.get(r.body, "current_products", 0), map[string]string{
		"product_code": "EMAIL-SEC", "seats": "700", "unit_price": "3.20",
	})

	// The audit trail.
	events := e.events(quote)
	wantTypes := []string{"ChangeQuoteOpened", "SeatsChanged", "QuoteSaved", "OrderReviewed", "AcknowledgementsGiven", "OrderSubmitted"}
	if len(events) != len(wantTypes) {
		t.Fatalf("%d events, want %v: %s", len(events), wantTypes, str(events))
	}
	lastPos := int64(-1)
	for i, ev := range events {
		e.wantFields("event "+strconv.Itoa(i+1), ev, map[string]string{
			"type": wantTypes[i], "version": strconv.Itoa(i + 1), "correlation_id": reqIDs[i],
		})
		e.wantFields("event actor", e.get(ev, "actor"), map[string]string{"msp_id": e.northwind, "user_id": "u-alex"})
		pos, err := strconv.ParseInt(str(e.get(ev, "position")), 10, 64)
		if err != nil || pos <= lastPos {
			t.Errorf("event %d: position %s after %d", i+1, str(e.get(ev, "position")), lastPos)
		}
		lastPos = pos
		for _, k := range []string{"event_id", "causation_id", "schema_version"} {
			if v := str(e.get(ev, k)); v == "" || v == "<nil>" {
				t.Errorf("event %d: %s is empty", i+1, k)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, str(e.get(ev, "recorded_at"))); err != nil {
			t.Errorf("event %d: recorded_at: %v", i+1, err)
		}
		if _, ok := e.get(ev, "data").(map[string]any); !ok {
			t.Errorf("event %d: data is not an object", i+1)
		}
	}
	e.wantFields("seat change data", e.get(events[1], "data"), map[string]string{"product_code": "EMAIL-SEC"})
}

// TestIfMatch: a command runs only at the version the caller names.
func TestIfMatch(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	seats := func(n int) map[string]any { return map[string]any{"product_code": "EMAIL-SEC", "total_seats": n} }

	r := e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), seats(700), "If-Match", `"1"`)
	e.wantFields("matching If-Match", r.body, map[string]string{"version": "2"})

	// Stale: the caller saw version 1.
	r = e.do("PUT", quotePath(quote, "/seats"), e.alex, seats(710), "If-Match", `"1"`)
	e.wantProblem(r, http.StatusPreconditionFailed, "precondition_failed")
	if n := e.eventCount(quote); n != 2 {
		t.Errorf("a stale If-Match appended: %d events, want 2", n)
	}
	if tag := r.header.Get("ETag"); tag != `"2"` {
		t.Errorf("412 ETag %q, want the current version \"2\"", tag)
	}
	// A weak tag never matches (If-Match compares strongly).
	r = e.do("PUT", quotePath(quote, "/seats"), e.alex, seats(710), "If-Match", `W/"2"`)
	e.wantProblem(r, http.StatusPreconditionFailed, "precondition_failed")
	// A tag from the future does not match either.
	r = e.do("POST", quotePath(quote, "/save"), e.alex, nil, "If-Match", `"3"`)
	e.wantProblem(r, http.StatusPreconditionFailed, "precondition_failed")
	if n := e.eventCount(quote); n != 2 {
		t.Errorf("refused commands appended: %d events, want 2", n)
	}

	r = e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), seats(710), "If-Match", "*")
	e.wantFields("If-Match *", r.body, map[string]string{"version": "3"})
	r = e.must(http.StatusOK, "POST", quotePath(quote, "/save"), nil, "If-Match", `"3"`)
	e.wantFields("If-Match at the current version", r.body, map[string]string{"version": "4", "status": "saved"})

	// Conditional reads of the preview.
	r = e.must(http.StatusOK, "GET", quotePath(quote, "/preview"), nil)
	tag := r.header.Get("ETag")
	if tag != `"4"` {
		t.Fatalf("preview ETag %q, want \"4\"", tag)
	}
	r = e.do("GET", quotePath(quote, "/preview"), e.alex, nil, "If-None-Match", tag)
	if r.status != http.StatusNotModified || len(r.raw) != 0 || r.header.Get("ETag") != tag {
		t.Errorf("If-None-Match with the current tag: %s (ETag %q), want 304 without a body", r, r.header.Get("ETag"))
	}
	r = e.do("GET", quotePath(quote, "/preview"), e.alex, nil, "If-None-Match", `"3"`)
	if r.status != http.StatusOK || str(r.body["version"]) != "4" {
		t.Errorf("If-None-Match with an old tag: %s, want 200", r)
	}
}

// TestEditAfterReview: any edit after a review sends the quote back to
// draft; it must be reviewed and acknowledged again.
func TestEditAfterReview(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.raised()                                           // v2
	e.ready(quote)                                                // v3 reviewed, v4 acknowledged
	r := e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), // v5
		map[string]any{"product_code": "EMAIL-SEC", "total_seats": 710})
	e.wantFields("edit after review", r.body, map[string]string{"version": "5", "status": "draft"})

	r = e.do("GET", quotePath(quote, "/summary"), e.alex, nil)
	e.wantProblem(r, http.StatusConflict, "not_reviewed")
	r = e.do("POST", quotePath(quote, "/submit"), e.alex, nil)
	e.wantProblem(r, http.StatusUnprocessableEntity, "not_reviewed")
	r = e.do("POST", quotePath(quote, "/acknowledgements"), e.alex, acks(true, true))
	e.wantProblem(r, http.StatusUnprocessableEntity, "not_reviewed")
	if n := e.eventCount(quote); n != 5 {
		t.Errorf("refused commands appended: %d events, want 5", n)
	}

	// Reviewed again: the old acknowledgements do not count.
	r = e.must(http.StatusOK, "POST", quotePath(quote, "/review"), nil) // v6
	e.wantFields("second review", r.body, map[string]string{"version": "6", "status": "reviewed", "acknowledgements": "<nil>", "total_users": "710"})
	e.wantFields("second review EMAIL-SEC", e.get(r.body, "lines", 0), map[string]string{
		"current_quantity": "710", "current_unit_price": "3.20", "current_payment": "2272.00",
	})
	r = e.do("POST", quotePath(quote, "/submit"), e.alex, nil)
	e.wantProblem(r, http.StatusUnprocessableEntity, "acknowledgements_missing")
	e.must(http.StatusOK, "POST", quotePath(quote, "/acknowledgements"), acks(true, true)) // v7
	r = e.must(http.StatusOK, "POST", quotePath(quote, "/submit"), nil)                    // v8
	e.wantFields("submit", r.body, map[string]string{"version": "8", "status": "submitted"})
	e.wantFields("Contoso", e.customer(e.contoso), map[string]string{"total_users": "710", "monthly_total": "3397.30"})
}

// TestTwoQuotesOneCustomer: the second order on a changed subscription is
// refused and appends nothing.
func TestTwoQuotesOneCustomer(t *testing.T) {
	t.Parallel()
	e := setup(t)
	first := e.raised()
	second := e.open(e.contoso)
	e.must(http.StatusOK, "POST", quotePath(second, "/products"), map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 682})
	e.ready(first)
	e.ready(second)

	e.must(http.StatusOK, "POST", quotePath(first, "/submit"), nil)
	before := e.eventCount(second)
	r := e.do("POST", quotePath(second, "/submit"), e.alex, nil)
	e.wantProblem(r, http.StatusConflict, "baseline_changed")
	if n := e.eventCount(second); n != before {
		t.Errorf("the refused submit appended: %d events, want %d", n, before)
	}
	r = e.must(http.StatusOK, "GET", quotePath(second, "/preview"), nil)
	e.wantFields("second quote", r.body, map[string]string{"status": "reviewed", "version": strconv.Itoa(before)})
	e.wantFields("Contoso", e.customer(e.contoso), map[string]string{"version": "2", "total_users": "700", "monthly_total": "3365.30"})
}

// TestClosedQuoteRefusesEverything: a submitted and a cancelled quote
// refuse every command with quote_closed and append nothing.
func TestClosedQuoteRefusesEverything(t *testing.T) {
	t.Parallel()
	e := setup(t)
	submitted := e.raised()
	e.must(http.StatusOK, "POST", quotePath(submitted, "/products"), map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 700})
	e.ready(submitted)
	e.must(http.StatusOK, "POST", quotePath(submitted, "/submit"), nil)
	cancelled := e.open(e.adatum)
	e.must(http.StatusOK, "POST", quotePath(cancelled, "/products"), map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 120})
	r := e.must(http.StatusOK, "POST", quotePath(cancelled, "/cancel"), nil)
	e.wantFields("cancel", r.body, map[string]string{"status": "cancelled", "version": "3"})
	if got := e.quotes(e.adatum, "?status=cancelled"); len(got) != 1 || str(e.get(got[0], "quote_id")) != cancelled {
		t.Errorf("cancelled quotes of Adatum = %s", str(got))
	}

	commands := []struct {
		method, path string
		body         any
	}{
		{"POST", "/products", map[string]any{"product_code": "DMARC", "term_type": "12 Month", "seats": 1}},
		{"DELETE", "/products/AWARENESS", nil},
		{"PUT", "/seats", map[string]any{"product_code": "EMAIL-SEC", "total_seats": 800}},
		{"POST", "/save", nil},
		{"POST", "/cancel", nil},
		{"POST", "/review", nil},
		{"POST", "/acknowledgements", acks(true, true)},
		{"POST", "/submit", nil},
	}
	for _, quote := range []string{submitted, cancelled} {
		before := e.eventCount(quote)
		for _, c := range commands {
			r := e.do(c.method, quotePath(quote, c.path), e.alex, c.body)
			e.wantProblem(r, http.StatusConflict, "quote_closed")
		}
		if n := e.eventCount(quote); n != before {
			t.Errorf("quote %s: refused commands appended: %d events, want %d", quote, n, before)
		}
	}
}

// TestTimeTravel: the preview as it stood at a version or a time.
func TestTimeTravel(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso) // v1
	time.Sleep(5 * time.Millisecond)
	e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), map[string]any{"product_code": "EMAIL-SEC", "total_seats": 700}) // v2
	time.Sleep(5 * time.Millisecond)
	e.must(http.StatusOK, "POST", quotePath(quote, "/products"), map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 700}) // v3

	wantAt := func(query string, version int) {
		t.Helper()
		r := e.must(http.StatusOK, "GET", quotePath(quote, "/preview")+query, nil)
		if r.header.Get("ETag") != `"`+strconv.Itoa(version)+`"` {
			t.Errorf("%s: ETag %s, want version %d", query, r.header.Get("ETag"), version)
		}
		want := map[int]map[string]string{
			1: {"version": "1", "new_monthly_total": "3341.80", "monthly_difference": "0.00", "changes_to_existing_products": "[]", "added_products": "[]"},
			2: {"version": "2", "new_monthly_total": "3365.30", "monthly_difference": "23.50", "added_products": "[]"},
			3: {"version": "3", "new_monthly_total": "4240.30", "monthly_difference": "898.50"},
		}[version]
		want["quote_id"], want["status"], want["prior_monthly_total"] = quote, "draft", "3341.80"
		e.wantFields(query, r.body, want)
		if n := len(e.list(r.body, "changes_to_existing_products")); version >= 2 && n != 2 {
			t.Errorf("%s: %d changes, want 2", query, n)
		}
		if version == 3 {
			e.wantFields(query+" added", e.get(r.body, "added_products", 0), map[string]string{
				"product_code": "AWARENESS", "product_name": awarenessName, "seats": "700", "unit_price": "1.25", "monthly_payment": "875.00",
			})
		}
	}
	wantAt("?as_of_version=1", 1)
	wantAt("?as_of_version=2", 2)
	wantAt("?as_of_version=3", 3)
	e.wantProblem(e.do("GET", quotePath(quote, "/preview?as_of_version=4"), e.alex, nil), http.StatusNotFound, "not_found")

	// By time: the times the events were recorded at.
	var at []time.Time
	for _, ev := range e.events(quote) {
		ts, err := time.Parse(time.RFC3339Nano, str(e.get(ev, "recorded_at")))
		if err != nil {
			t.Fatal(err)
		}
		at = append(at, ts)
	}
	if len(at) != 3 || !at[0].Before(at[1]) || !at[1].Before(at[2]) {
		t.Fatalf("recorded_at = %v, want three increasing times", at)
	}
	q := func(ts time.Time) string { return "?as_of=" + ts.UTC().Format(time.RFC3339Nano) }
	wantAt(q(at[0]), 1)
	wantAt(q(at[0].Add(at[1].Sub(at[0])/2)), 1)
	wantAt(q(at[1]), 2)
	wantAt(q(at[1].Add(at[2].Sub(at[1])/2)), 2)
	wantAt(q(at[2]), 3)
	wantAt(q(at[2].Add(time.Hour)), 3)
	// The same instant in another zone.
	wantAt("?as_of="+url.QueryEscape(at[1].In(time.FixedZone("", 2*3600)).Format(time.RFC3339Nano)), 2)
	// Before the quote existed.
	r := e.do("GET", quotePath(quote, "/preview")+q(at[0].Add(-time.Second)), e.alex, nil)
	e.wantProblem(r, http.StatusNotFound, "not_found")
}

// TestQuoteEditing: the edits between opening and reviewing, as the
// preview and the summary show them.
func TestQuoteEditing(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	seats := func(code string, n int) map[string]any { return map[string]any{"product_code": code, "total_seats": n} }

	// Raised, then back to the subscription's quantity: no change left.
	e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), seats("EMAIL-SEC", 700))
	r := e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), seats("EMAIL-SEC", 682))
	e.wantFields("back to 682", r.body, map[string]string{"version": "3", "status": "draft"})
	r = e.must(http.StatusOK, "GET", quotePath(quote, "/preview"), nil)
	e.wantFields("preview back at 682", r.body, map[string]string{
		"changes_to_existing_products": "[]", "new_monthly_total": "3341.80", "monthly_difference": "0.00",
	})
	e.wantProblem(e.do("POST", quotePath(quote, "/review"), e.alex, nil), http.StatusUnprocessableEntity, "nothing_to_review")
	// The same total again records nothing.
	r = e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), seats("EMAIL-SEC", 682))
	e.wantFields("no change", r.body, map[string]string{"version": "3"})
	if r.header.Get("ETag") != `"3"` {
		t.Errorf("no change: ETag %s", r.header.Get("ETag"))
	}

	// Saved, then edited: it stays saved.
	e.must(http.StatusOK, "POST", quotePath(quote, "/save"), nil) // v4
	r = e.must(http.StatusOK, "POST", quotePath(quote, "/products"), map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 700})
	e.wantFields("added to a saved quote", r.body, map[string]string{"version": "5", "status": "saved"})
	// An added product's seats change with its tier, up or down.
	e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), seats("AWARENESS", 1000)) // v6
	r = e.must(http.StatusOK, "GET", quotePath(quote, "/preview"), nil)
	e.wantFields("AWARENESS at 1000", e.get(r.body, "added_products", 0), map[string]string{
		"product_code": "AWARENESS", "seats": "1000", "unit_price": "0.99", "monthly_payment": "990.00",
	})
	e.wantFields("preview", r.body, map[string]string{"new_monthly_total": "4331.80", "monthly_difference": "990.00"})
	e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), seats("AWARENESS", 800)) // v7
	// A product that is not per user does not count as users.
	e.must(http.StatusOK, "POST", quotePath(quote, "/products"), map[string]any{"product_code": "DMARC", "term_type": "12 Month", "seats": 5000}) // v8
	e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), seats("EMAIL-SEC", 750))                                                             // v9

	r = e.must(http.StatusOK, "POST", quotePath(quote, "/review"), nil) // v10
	e.wantFields("summary", r.body, map[string]string{
		"version": "10", "status": "reviewed", "total_users": "800",
		"prior_monthly_total": "3341.80", "new_monthly_total": "229525.30",
	})
	lines := e.list(r.body, "lines")
	if len(lines) != 4 {
		t.Fatalf("summary lines = %s", str(lines))
	}
	e.wantFields("EMAIL-SEC line", lines[0], map[string]string{"current_quantity": "750", "current_unit_price": "3.20", "current_payment": "2400.00"})
	e.wantFields("added AWARENESS line", lines[2], map[string]string{
		"product_code": "AWARENESS", "product": awarenessName, "prior_quantity": "0", "current_quantity": "800",
		"prior_unit_price": "0.00", "prior_payment": "0.00", "current_unit_price": "1.25", "current_payment": "1000.00",
	})
	e.wantFields("added DMARC line", lines[3], map[string]string{
		"product_code": "DMARC", "prior_quantity": "0", "current_quantity": "5000", "current_unit_price": "45.00", "current_payment": "225000.00",
	})
	// Saving a reviewed quote keeps it reviewed, with its summary.
	r = e.must(http.StatusOK, "POST", quotePath(quote, "/save"), nil) // v11
	e.wantFields("saved after review", r.body, map[string]string{"version": "11", "status": "reviewed"})
	r = e.must(http.StatusOK, "GET", quotePath(quote, "/summary"), nil)
	e.wantFields("summary after save", r.body, map[string]string{"version": "11", "status": "reviewed", "total_users": "800"})

	// Removing an added product is an edit: back to draft.
	r = e.must(http.StatusOK, "DELETE", quotePath(quote, "/products/DMARC"), nil) // v12
	e.wantFields("removed DMARC", r.body, map[string]string{"version": "12", "status": "draft"})
	r = e.must(http.StatusOK, "GET", quotePath(quote, "/preview"), nil)
	if added := e.list(r.body, "added_products"); len(added) != 1 || str(e.get(added[0], "product_code")) != "AWARENESS" {
		t.Errorf("added products after the removal: %s", str(added))
	}
	e.wantProblem(e.do("DELETE", quotePath(quote, "/products/DMARC"), e.alex, nil), http.StatusUnprocessableEntity, "product_not_added")

	// Submitted: the customer has the new lines, and users count per user.
	e.ready(quote)
	e.must(http.StatusOK, "POST", quotePath(quote, "/submit"), nil)
	c := e.customer(e.contoso)
	e.wantFields("Contoso", c, map[string]string{"total_users": "800", "monthly_total": "4525.30", "version": "2"})
	if n := len(e.list(c, "lines")); n != 3 {
		t.Errorf("Contoso has %d lines, want 3", n)
	}
	want := []string{"ChangeQuoteOpened", "SeatsChanged", "SeatsChanged", "QuoteSaved", "ProductAdded", "SeatsChanged", "SeatsChanged",
		"ProductAdded", "SeatsChanged", "OrderReviewed", "QuoteSaved", "ProductRemoved", "OrderReviewed", "AcknowledgementsGiven", "OrderSubmitted"}
	if got := e.eventTypes(quote); !slices.Equal(got, want) {
		t.Errorf("events %v\nwant %v", got, want)
	}
}

// TestConcurrentSubmits: two orders on one subscription at once: one is
// placed, the other is told the baseline changed.
func TestConcurrentSubmits(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quotes := []string{e.raised(), e.open(e.contoso)}
	e.must(http.StatusOK, "POST", quotePath(quotes[1], "/products"), map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 100})
	e.ready(quotes[0])
	e.ready(quotes[1])

	replies := make([]reply, 2)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, q := range quotes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i] = e.do("POST", quotePath(q, "/submit"), e.alex, nil)
		}()
	}
	close(start)
	wg.Wait()
	won := -1
	for i, r := range replies {
		if r.status == http.StatusOK {
			if won >= 0 {
				t.Fatalf("both orders were placed: %s, %s", replies[0], replies[1])
			}
			won = i
		}
	}
	if won < 0 {
		t.Fatalf("no order was placed: %s, %s", replies[0], replies[1])
	}
	e.wantProblem(replies[1-won], http.StatusConflict, "baseline_changed")
	if n := e.eventCount(quotes[1-won]); n != 4 {
		t.Errorf("the refused order's quote has %d events, want 4", n)
	}
	want := map[int]string{0: "3365.30", 1: "3466.80"}[won]
	e.wantFields("Contoso", e.customer(e.contoso), map[string]string{"version": "2", "monthly_total": want})
}
