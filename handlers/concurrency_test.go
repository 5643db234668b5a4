package handlers_test

// Concurrent writers through HTTP against the real database. These extend
// TestVersionConflict (writers that may not decide again),
// TestConcurrentSubmits (two orders) and TestIdempotencyConcurrent (ten
// identical adds and opens): many writers with the application's retries,
// many orders and two users, idempotent replays of commands that touch two
// streams, and keys raced with other writers and other bodies.

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// concurrently runs n requests at once (as nearly as a barrier allows) and
// returns their replies in order.
func (e *env) concurrently(n int, req func(i int) reply) []reply {
	e.t.Helper()
	replies := make([]reply, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			replies[i] = req(i)
		})
	}
	close(start)
	wg.Wait()
	return replies
}

// quoteEvent is what the concurrency tests read of an audit event.
type quoteEvent struct {
	typ                     string
	version                 int64
	newSeats, previousSeats int
}

func (e *env) quoteEvents(quote string) []quoteEvent {
	e.t.Helper()
	var out []quoteEvent
	for _, ev := range e.events(quote) {
		qe := quoteEvent{typ: str(e.get(ev, "type"))}
		v, err := strconv.ParseInt(str(e.get(ev, "version")), 10, 64)
		if err != nil {
			e.t.Fatalf("event version: %v", err)
		}
		qe.version = v
		if qe.typ == "SeatsChanged" {
			qe.newSeats, _ = strconv.Atoi(str(e.get(ev, "data", "new_seats")))
			qe.previousSeats, _ = strconv.Atoi(str(e.get(ev, "data", "previous_seats")))
		}
		out = append(out, qe)
	}
	return out
}

// TestConcurrentSeatRaises: 64 clients raise the seats of one quote at
// once, each to a total of its own above the subscription's 682.
//
// What is expected: the application decides again on a version conflict
// (5 times), so most writers win, in some order; a writer that keeps
// losing gets 409 version_conflict. No writer gets 422 seats_decrease: the
// rule is "never below the subscription", and every total is above it, so
// a lower total committed after a higher one is a valid change. Then:
//   - the quote's versions are 1..n without a gap, n = 1 + the 2xx answers;
//   - each 2xx answer's version is a SeatsChanged to that client's total,
//     and no two answers share a version;
//   - the SeatsChanged events chain: each one's previous_seats is the
//     new_seats before it (682 for the first), so no decision was made on
//     a stale quote;
//   - the preview is the last committed state.
func TestConcurrentSeatRaises(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	const n = 64
	total := func(i int) int { return 683 + i }
	replies := e.concurrently(n, func(i int) reply {
		return e.do("PUT", quotePath(quote, "/seats"), e.alex, map[string]any{"product_code": "EMAIL-SEC", "total_seats": total(i)})
	})

	won := map[int64]int{} // version → the total of the client that got it
	lost := 0
	for i, r := range replies {
		switch r.status {
		case http.StatusOK:
			v, err := strconv.ParseInt(str(r.body["version"]), 10, 64)
			if err != nil {
				t.Fatalf("client %d: %s", i, r)
			}
			if r.header.Get("ETag") != strconv.Quote(strconv.FormatInt(v, 10)) {
				t.Errorf("client %d: ETag %s, version %d", i, r.header.Get("ETag"), v)
			}
			if other, dup := won[v]; dup {
				t.Errorf("clients with totals %d and %d were both answered version %d", other, total(i), v)
			}
			won[v] = total(i)
		case http.StatusConflict:
			e.on(t).wantProblem(r, http.StatusConflict, "version_conflict")
			lost++
		default:
			t.Errorf("client %d (total %d): %s; want 200 or 409 version_conflict", i, total(i), r)
		}
	}
	t.Logf("%d of %d writers won, %d gave up after their retries", len(won), n, lost)
	if len(won) == 0 {
		t.Fatal("no writer won")
	}

	events := e.quoteEvents(quote)
	if len(events) != 1+len(won) {
		t.Errorf("%d events, want %d: the opening and one per 2xx answer", len(events), 1+len(won))
	}
	prev := 682
	for i, ev := range events {
		if ev.version != int64(i+1) {
			t.Fatalf("event %d has version %d: the versions have a gap", i, ev.version)
		}
		if i == 0 {
			continue
		}
		if ev.typ != "SeatsChanged" {
			t.Errorf("event %d is %s, want SeatsChanged", ev.version, ev.typ)
			continue
		}
		if want, ok := won[ev.version]; !ok || ev.newSeats != want {
			t.Errorf("event %d sets %d seats; the 2xx answer of version %d was for %d (answered: %t)", ev.version, ev.newSeats, ev.version, want, ok)
		}
		if ev.previousSeats != prev {
			t.Errorf("event %d was decided on %d seats, but the quote had %d", ev.version, ev.previousSeats, prev)
		}
		prev = ev.newSeats
	}

	last := events[len(events)-1]
	r := e.must(http.StatusOK, "GET", quotePath(quote, "/preview"), nil)
	e.wantFields("preview", r.body, map[string]string{"version": strconv.FormatInt(last.version, 10)})
	if r.header.Get("ETag") != strconv.Quote(strconv.FormatInt(last.version, 10)) {
		t.Errorf("preview ETag %s, want version %d", r.header.Get("ETag"), last.version)
	}
	e.wantFields("the raised line", e.get(r.body, "changes_to_existing_products", 1), map[string]string{
		"product_code": "EMAIL-SEC", "quantity": strconv.Itoa(last.newSeats),
	})
	// The read model and the events agree: rebuilt at the last version.
	again := e.must(http.StatusOK, "GET", quotePath(quote, "/preview?as_of_version="+strconv.FormatInt(last.version, 10)), nil)
	if str(again.body) != str(r.body) {
		t.Errorf("the preview differs from the quote rebuilt from its events:\nread model %s\nevents     %s", str(r.body), str(again.body))
	}
}

// TestConcurrentOrdersOneCustomer: eight reviewed and acknowledged quotes
// on one customer, each submitted by two clients (u-alex and u-sam) at
// once. Exactly one order is placed; the other request on the winning
// quote finds it closed (409 quote_closed) and every request on another
// quote finds the subscription changed (409 baseline_changed). Nothing of
// the losers is appended, and the customer has the winner's seats.
func TestConcurrentOrdersOneCustomer(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const quotes = 8
	ids := make([]string, quotes)
	for i := range ids {
		ids[i] = e.open(e.adatum)
		e.must(http.StatusOK, "PUT", quotePath(ids[i], "/seats"), map[string]any{"product_code": "EMAIL-SEC", "total_seats": 121 + i})
		e.ready(ids[i])
	}
	replies := e.concurrently(2*quotes, func(i int) reply {
		key := e.alex
		if i%2 == 1 {
			key = e.sam
		}
		return e.do("POST", quotePath(ids[i/2], "/submit"), key, nil)
	})
	winner := -1
	for i, r := range replies {
		if r.status == http.StatusOK {
			if winner >= 0 {
				t.Fatalf("two orders were placed: %s and %s", replies[winner], r)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no order was placed: %v", replies)
	}
	for i, r := range replies {
		switch {
		case i == winner:
		case i/2 == winner/2:
			e.wantProblem(r, http.StatusConflict, "quote_closed")
		default:
			e.wantProblem(r, http.StatusConflict, "baseline_changed")
		}
	}
	for i, id := range ids {
		want := []string{"ChangeQuoteOpened", "SeatsChanged", "OrderReviewed", "AcknowledgementsGiven"}
		if i == winner/2 {
			want = append(want, "OrderSubmitted")
		}
		if got := e.eventTypes(id); !slices.Equal(got, want) {
			t.Errorf("quote %d: events %v, want %v", i, got, want)
		}
	}
	// The customer is amended once (its stream: onboarded, one amendment),
	// with the winner's seats. The customer list is projected
	// asynchronously; the customer's own stream is not.
	var n int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM events WHERE stream_id = $1`, e.adatum).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("the customer's stream has %d events, want 2", n)
	}
	r := e.must(http.StatusOK, "GET", quotePath(ids[winner/2], "/summary"), nil)
	e.wantFields("the placed order", r.body, map[string]string{"status": "submitted", "total_users": strconv.Itoa(121 + winner/2)})
}

// TestIdempotentReplaysUnderConcurrency: the same key and body from 20
// goroutines at once, on commands beyond those TestIdempotencyConcurrent
// races (a seat change, and a submit, which appends to two streams): one
// effect, and every answer the same, byte for byte.
func TestIdempotentReplaysUnderConcurrency(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const n = 20

	quote := e.open(e.contoso)
	key := "race-seats-" + e.sfx
	replies := e.concurrently(n, func(int) reply {
		return e.do("PUT", quotePath(quote, "/seats"), e.alex, `{"product_code":"EMAIL-SEC","total_seats":700}`, "Idempotency-Key", key)
	})
	for i, r := range replies {
		if r.status != http.StatusOK {
			t.Errorf("seats %d: %s", i, r)
		}
		e.sameAnswer(replies[0], r)
	}
	if got := e.eventTypes(quote); !slices.Equal(got, []string{"ChangeQuoteOpened", "SeatsChanged"}) {
		t.Errorf("events %v, want one SeatsChanged", got)
	}

	e.ready(quote)
	key = "race-submit-" + e.sfx
	replies = e.concurrently(n, func(int) reply {
		return e.do("POST", quotePath(quote, "/submit"), e.alex, nil, "Idempotency-Key", key)
	})
	for i, r := range replies {
		if r.status != http.StatusOK {
			t.Errorf("submit %d: %s", i, r)
		}
		e.sameAnswer(replies[0], r)
	}
	if got := e.eventTypes(quote); len(got) != 5 || got[4] != "OrderSubmitted" {
		t.Errorf("events %v, want one OrderSubmitted", got)
	}
	var amended int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM events WHERE stream_id = $1`, e.contoso).Scan(&amended); err != nil {
		t.Fatal(err)
	}
	if amended != 2 {
		t.Errorf("the customer's stream has %d events, want 2 (onboarded, amended once)", amended)
	}
}

// TestIdempotencyKeyRacedWithOtherBodies: one key sent at once with two
// bodies, 10 requests each. Whichever body's request stores the key first
// has the effect and its answer; every request with that body gets that
// answer, every request with the other body 422 idempotency_key_reused.
func TestIdempotencyKeyRacedWithOtherBodies(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	key := "race-bodies-" + e.sfx
	totals := []int{700, 750}
	replies := e.concurrently(20, func(i int) reply {
		return e.do("PUT", quotePath(quote, "/seats"), e.alex, map[string]any{"product_code": "EMAIL-SEC", "total_seats": totals[i%2]}, "Idempotency-Key", key)
	})
	winner := -1
	for i, r := range replies {
		if r.status == http.StatusOK {
			winner = i % 2
			break
		}
	}
	if winner < 0 {
		t.Fatalf("no request ran: %v", replies)
	}
	first := -1
	for i, r := range replies {
		if i%2 != winner {
			e.wantProblem(r, http.StatusUnprocessableEntity, "idempotency_key_reused")
			continue
		}
		if first < 0 {
			first = i
		}
		if r.status != http.StatusOK {
			t.Errorf("request %d (total %d): %s", i, totals[i%2], r)
		}
		e.sameAnswer(replies[first], r)
	}
	events := e.quoteEvents(quote)
	if len(events) != 2 || events[1].newSeats != totals[winner] {
		t.Errorf("events %+v, want one SeatsChanged to %d", events, totals[winner])
	}
}

// TestIdempotencyKeyRacedWithOtherWriters: 20 requests with one key and
// body race 20 writers without a key on the same quote, so that the keyed
// requests lose version conflicts and decide again. The key has at most
// one effect; the keyed requests that got a 2xx all got the same answer;
// a keyed request is refused only with 409 version_conflict (its retries
// ran out before any request with its key committed: a refusal is not
// stored for the key).
func TestIdempotencyKeyRacedWithOtherWriters(t *testing.T) {
	t.Parallel()
	e := setup(t)
	quote := e.open(e.contoso)
	key := "race-writers-" + e.sfx
	const n = 20
	replies := e.concurrently(2*n, func(i int) reply {
		if i%2 == 0 {
			return e.do("PUT", quotePath(quote, "/seats"), e.alex, `{"product_code":"EMAIL-SEC","total_seats":700}`, "Idempotency-Key", key)
		}
		return e.do("PUT", quotePath(quote, "/seats"), e.alex, map[string]any{"product_code": "EMAIL-SEC", "total_seats": 701 + i})
	})
	var keyed []reply
	wins := 0
	for i, r := range replies {
		if r.status == http.StatusOK {
			wins++
		} else {
			e.wantProblem(r, http.StatusConflict, "version_conflict")
		}
		if i%2 == 0 && r.status == http.StatusOK {
			keyed = append(keyed, r)
		}
	}
	for _, r := range keyed[min(1, len(keyed)):] {
		e.sameAnswer(keyed[0], r)
	}
	events := e.quoteEvents(quote)
	at700 := 0
	for _, ev := range events[1:] {
		if ev.newSeats == 700 {
			at700++
		}
	}
	if len(keyed) > 0 && at700 != 1 || len(keyed) == 0 && at700 != 0 {
		t.Errorf("%d SeatsChanged to 700 (the keyed request), want %d", at700, min(1, len(keyed)))
	}
	// One event per winner without a key, and one for the key.
	if want := 1 + wins - len(keyed) + min(1, len(keyed)); len(events) != want {
		t.Errorf("%d events, want %d", len(events), want)
	}
	t.Logf("%d keyed answers of %d were 2xx; %d events", len(keyed), n, len(events))
}
