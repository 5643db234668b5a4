package handlers_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// sameAnswer checks that a replay gives the first answer again.
func (e *env) sameAnswer(first, again reply) {
	e.t.Helper()
	if again.status != first.status || !bytes.Equal(again.raw, first.raw) ||
		again.header.Get("ETag") != first.header.Get("ETag") || again.header.Get("Location") != first.header.Get("Location") ||
		again.header.Get("Content-Type") != first.header.Get("Content-Type") {
		e.t.Errorf("the replay differs:\nfirst %s (ETag %s, Location %q)\nagain %s (ETag %s, Location %q)",
			first, first.header.Get("ETag"), first.header.Get("Location"), again, again.header.Get("ETag"), again.header.Get("Location"))
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	addAwareness := map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 700}
	key := "idem-add-" + e.sfx

	first := e.must(http.StatusOK, "POST", quotePath(quote, "/products"), addAwareness, "Idempotency-Key", key)
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("the first answer says Idempotent-Replayed: %q", first.header.Get("Idempotent-Replayed"))
	}
	e.wantFields("first add", first.body, map[string]string{"version": "2"})
	again := e.do("POST", quotePath(quote, "/products"), e.alex, addAwareness, "Idempotency-Key", key)
	e.sameAnswer(first, again)
	if again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("the replay says Idempotent-Replayed: %q, want true", again.header.Get("Idempotent-Replayed"))
	}
	// The same JSON, written the same way, replays even after the quote
	// moved on.
	e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), map[string]any{"product_code": "EMAIL-SEC", "total_seats": 700})
	e.sameAnswer(first, e.do("POST", quotePath(quote, "/products"), e.alex, addAwareness, "Idempotency-Key", key))
	if got := e.eventTypes(quote); len(got) != 3 || got[1] != "ProductAdded" || got[2] != "SeatsChanged" {
		t.Errorf("events %v, want one ProductAdded", got)
	}

	// The same key with another body, or on another quote.
	r := e.do("POST", quotePath(quote, "/products"), e.alex, map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 800}, "Idempotency-Key", key)
	e.wantProblem(r, http.StatusUnprocessableEntity, "idempotency_key_reused")
	other := e.open(e.contoso)
	r = e.do("POST", quotePath(other, "/products"), e.alex, addAwareness, "Idempotency-Key", key)
	e.wantProblem(r, http.StatusUnprocessableEntity, "idempotency_key_reused")
	if n := e.eventCount(quote); n != 3 {
		t.Errorf("%d events, want 3", n)
	}
	if n := e.eventCount(other); n != 1 {
		t.Errorf("the other quote has %d events, want 1", n)
	}

	// Keys belong to a user: Kim's request with Alex's key is Kim's own
	// (and not found), not a replay of Alex's answer.
	r = e.do("POST", quotePath(quote, "/products"), e.kim, addAwareness, "Idempotency-Key", key)
	e.wantProblem(r, http.StatusNotFound, "not_found")
	// Sam's is his own too: it runs, and is refused on its own merits.
	r = e.do("POST", quotePath(quote, "/products"), e.sam, addAwareness, "Idempotency-Key", key)
	e.wantProblem(r, http.StatusUnprocessableEntity, "product_already_present")

	// Opening a quote with a key opens one quote.
	openKey := "idem-open-" + e.sfx
	path := "/v1/customers/" + e.adatum + "/change-quotes"
	opened := e.must(http.StatusCreated, "POST", path, nil, "Idempotency-Key", openKey)
	reopened := e.do("POST", path, e.alex, nil, "Idempotency-Key", openKey)
	e.sameAnswer(opened, reopened)
	if reopened.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("the replayed open says Idempotent-Replayed: %q", reopened.header.Get("Idempotent-Replayed"))
	}
	if got := e.quotes(e.adatum, ""); len(got) != 1 || str(e.get(got[0], "quote_id")) != str(opened.body["quote_id"]) {
		t.Errorf("Adatum's quotes = %s, want the one opened", str(got))
	}
}

// TestIdempotencyConcurrent: ten identical requests at once get one answer
// and append once.
func TestIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	body := map[string]any{"product_code": "AWARENESS", "term_type": "12 Month", "seats": 700}
	key := "idem-race-" + e.sfx

	const n = 10
	replies := make([]reply, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i] = e.do("POST", quotePath(quote, "/products"), e.alex, body, "Idempotency-Key", key)
		}()
	}
	close(start)
	wg.Wait()
	for i, r := range replies {
		if r.status != http.StatusOK {
			t.Errorf("request %d: %s", i, r)
		}
		if i > 0 {
			e.sameAnswer(replies[0], r)
		}
	}
	if got := e.eventTypes(quote); len(got) != 2 || got[1] != "ProductAdded" {
		t.Errorf("events %v, want ChangeQuoteOpened and one ProductAdded", got)
	}

	// Ten identical opens at once open one quote.
	openKey := "idem-race-open-" + e.sfx
	path := "/v1/customers/" + e.adatum + "/change-quotes"
	start = make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i] = e.do("POST", path, e.alex, nil, "Idempotency-Key", openKey)
		}()
	}
	close(start)
	wg.Wait()
	for i, r := range replies {
		if r.status != http.StatusCreated {
			t.Errorf("open %d: %s", i, r)
		}
		if i > 0 {
			e.sameAnswer(replies[0], r)
		}
	}
	if got := e.quotes(e.adatum, ""); len(got) != 1 {
		t.Errorf("Adatum has %d quotes, want 1", len(got))
	}
}

// TestIdempotencyKeyOfANoOp: API.md: "the same key with another body is
// 422 idempotency_key_reused", also when the first request changed
// nothing.
func TestIdempotencyKeyOfANoOp(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	key := "idem-noop-" + e.sfx
	// 682 is the subscription's own quantity: a valid request that
	// records nothing.
	first := e.must(http.StatusOK, "PUT", quotePath(quote, "/seats"), map[string]any{"product_code": "EMAIL-SEC", "total_seats": 682}, "Idempotency-Key", key)
	e.wantFields("no-op", first.body, map[string]string{"version": "1"})
	r := e.do("PUT", quotePath(quote, "/seats"), e.alex, map[string]any{"product_code": "EMAIL-SEC", "total_seats": 700}, "Idempotency-Key", key)
	e.wantProblem(r, http.StatusUnprocessableEntity, "idempotency_key_reused")
	if n := e.eventCount(quote); n != 1 {
		t.Errorf("%d events, want 1: the reused key ran another request", n)
	}
}

// TestIdempotencyKeyRule: the API says a key is 1 to 255 printable ASCII
// characters without spaces (problem invalid_idempotency_key): anywhere in
// the key.
func TestIdempotencyKeyRule(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	save := quotePath(quote, "/save")
	e.must(http.StatusOK, "POST", save, nil, "Idempotency-Key", strings.Repeat("k", 255))
	e.wantProblem(e.do("POST", save, e.alex, nil, "Idempotency-Key", strings.Repeat("k", 256)), http.StatusBadRequest, "invalid_idempotency_key")
	e.wantProblem(e.do("POST", save, e.alex, nil, "Idempotency-Key", "a key"), http.StatusBadRequest, "invalid_idempotency_key")
	e.wantProblem(e.do("POST", save, e.alex, nil, "Idempotency-Key", strings.Repeat("k", 200)+" "+e.sfx), http.StatusBadRequest, "invalid_idempotency_key")
	if n := e.eventCount(quote); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}
