package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/loadgen"
	"github.com/upsell-dev/upsell/projections"
)

// Crash safety: `upsell serve`, a real process, is killed with SIGKILL at
// random moments while concurrent clients send commands, and started
// again, crashKills times. Then, once a last process has caught up:
//
//   - every command carries an Idempotency-Key of its own; one a kill
//     cut is sent again, same request and key, new X-Request-ID, to the
//     next process (the last one answers only such retries), until it
//     gets an answer;
//   - the events of a command are those of one of its attempts at most:
//     a command answered 2xx is in the log exactly once, at the quote
//     version the answer reported, under the request id (correlation id)
//     of the attempt answered or, when the answer is a replay
//     (Idempotent-Replayed: true), of an earlier attempt cut by a kill;
//   - no command answered 4xx or 5xx appended anything in any attempt,
//     and every event appended during the run belongs to a command
//     answered 2xx, all of its events or none;
//   - a key has a stored response if and only if its command's events are
//     in the log, and a 2xx answer, replayed or not, is that response;
//   - every read model equals its rebuild from the log;
//   - the relay (run by serve, to the default SQL topic) published every
//     event at least once and nothing that is not an event of the log,
//     and a consumer de-duplicating on the message UUID gets each stream
//     in order.
func TestServeKilledUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		crashKills   = 11
		crashClients = 8
		seed         = 6001
	)
	ctx := context.Background()
	url := testdb.Empty(t)
	if code, out, errOut := upsell(t, url, "migrate"); code != 0 {
		t.Fatalf("migrate: code %d\n%s\n%s", code, out, errOut)
	}
	pool := openPool(t, url)
	data, err := loadgen.Generate(seed, 4*crashClients, crashClients)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := importer.Import(ctx, eventstore.New(pool), data.File, domain.SystemClock{}); err != nil {
		t.Fatalf("import loadgen's data: %v", err)
	}
	var imported int64 // the last position before the run
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&imported); err != nil {
		t.Fatal(err)
	}

	gate := newCrashGate()
	tr := &http.Transport{MaxIdleConnsPerHost: crashClients}
	t.Cleanup(tr.CloseIdleConnections)
	httpClient := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var succeeded atomic.Int64
	clients := make([]*crashClient, crashClients)
	var wg sync.WaitGroup
	for i := range clients {
		c := &crashClient{
			n: i + 1, key: data.Users[i].Key, customers: data.Users[i].Customers, catalog: data.File.Products,
			gate: gate, http: httpClient, rng: rand.New(rand.NewPCG(rand.Uint64(), uint64(i))), succeeded: &succeeded,
		}
		clients[i] = c
		wg.Go(c.run)
	}
	stopClients := sync.OnceFunc(func() {
		close(gate.done)
		wg.Wait()
	})
	t.Cleanup(stopClients)

	// Each process serves the clients for 0.3 to 1 s, and at least until
	// it has answered one command with a 2xx, then dies without warning.
	start := time.Now()
	var logs []*syncBuffer
	perProcess := make([]int64, 0, crashKills)
	for k := 1; k <= crashKills; k++ {
		p := startCrashServe(t, url)
		logs = append(logs, p.stderr)
		before := succeeded.Load()
		gate.open(p.base, k)
		timer := time.NewTimer(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		select {
		case err := <-p.exited:
			t.Fatalf("serve process %d ended by itself (%v); stderr:\n%s", k, err, p.stderr.String())
		case <-timer.C:
		}
		for deadline := time.Now().Add(relayWait); succeeded.Load() == before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("serve process %d answered no command with a 2xx within %s; stderr:\n%s", k, relayWait, p.stderr.String())
			}
		}
		gate.shut()
		err := p.kill(t, syscall.SIGKILL)
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("serve process %d: %v, not killed; stderr:\n%s", k, err, p.stderr.String())
		}
		perProcess = append(perProcess, succeeded.Load()-before)
	}
	loadTime := time.Since(start)

	// A last process answers the retries of the commands the last kill
	// cut, and nothing else, then catches up: the customers projector and
	// the relay.
	last := startCrashServe(t, url)
	logs = append(logs, last.stderr)
	gate.drain(last.base, crashKills+1)
	wg.Wait()
	stopClients()
	waitLogSettled(t, pool)
	waitRelayed(t, pool, postgresTransport(t), last.stderr)
	for deadline := time.Now().Add(relayWait); ; time.Sleep(20 * time.Millisecond) {
		lag, err := projections.Lag(ctx, pool, "customers")
		if err != nil {
			t.Fatal(err)
		}
		if lag.Events == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the customers projector is still %d events behind after %s; log:\n%s", lag.Events, relayWait, last.stderr.String())
		}
	}
	if err := last.kill(t, syscall.SIGTERM); err != nil {
		t.Errorf("the last serve process, stopped with SIGTERM: %v; stderr:\n%s", err, last.stderr.String())
	}

	var reqs []*crashRequest
	for _, c := range clients {
		reqs = append(reqs, c.reqs...)
	}
	events := crashEvents(t, pool)
	byCorrelation := map[string][]crashEvent{}
	for _, e := range events {
		byCorrelation[e.CorrelationID] = append(byCorrelation[e.CorrelationID], e)
	}

	// The attempts of each command, by Idempotency-Key, in the order sent;
	// the last one's answer is the command's.
	byKey := map[string][]*crashRequest{}
	var keys []string
	for _, r := range reqs {
		if !r.Command {
			continue
		}
		if _, ok := byKey[r.Key]; !ok {
			keys = append(keys, r.Key)
		}
		byKey[r.Key] = append(byKey[r.Key], r)
	}
	final := func(r *crashRequest) *crashRequest { a := byKey[r.Key]; return a[len(a)-1] }

	// The answers are those the flows expect: a server that was killed
	// and started again refuses nothing it should accept, and fails
	// nothing (no 5xx); a retry of a command that took effect before the
	// kill gets the answer stored with it, marked Idempotent-Replayed, and
	// only a retry does.
	var commands, ok2xx, refused, failed5xx, noAnswer, noAnswerApplied, gets int
	var retries, retriesCut, replays, fresh2xx, fresh4xx int
	var unexpected []string
	for _, r := range reqs {
		if !r.Command {
			gets++
		} else {
			commands++
			if r.Attempt > 1 {
				retries++
			}
		}
		switch {
		case !r.answered():
			if r.Command {
				noAnswer++
				if r.Attempt > 1 {
					retriesCut++
				}
				if len(byCorrelation[r.ID]) > 0 {
					noAnswerApplied++
				}
			}
			continue
		case r.Status >= 500:
			failed5xx++
		case r.Status >= 400:
			refused++
		case r.Command:
			ok2xx++
		}
		if r.Attempt > 1 {
			switch {
			case r.Replayed:
				replays++
			case r.Status < 300:
				fresh2xx++
			default:
				fresh4xx++
			}
		}
		if r.Status != r.Want || r.Err != "" || (r.Replayed && r.Attempt == 1) {
			unexpected = append(unexpected, fmt.Sprintf("%s (key %s, attempt %d) %s %s (process %d): %d %s (replayed: %t), want %d %s: %s",
				r.ID, r.Key, r.Attempt, r.Method, r.Path, r.Incarnation, r.Status, r.Code, r.Replayed, r.Want, r.Err, r.Body[:min(len(r.Body), 300)]))
		}
	}
	crashReport(t, "answers the flow did not expect", unexpected)

	// Exactly once, by Idempotency-Key: the events of a command are those
	// of one of its attempts at most. (a) A command answered 2xx is in the
	// log at the version it answered: under the attempt's own request id
	// when it ran, under the id of an earlier attempt, cut by a kill, when
	// the answer is a replay. (b) A command answered 4xx or 5xx appended
	// nothing, in none of its attempts. The last process answers every
	// retry, so every command has an answer.
	var lost, appendedAnyway, twice, unanswered []string
	applied := map[string]*crashRequest{} // the attempt whose events are in the log, by key
	for _, k := range keys {
		attempts := byKey[k]
		last := attempts[len(attempts)-1]
		var with []*crashRequest
		for _, a := range attempts {
			if len(byCorrelation[a.ID]) > 0 {
				with = append(with, a)
			}
		}
		if len(with) > 1 {
			var s []string
			for _, a := range with {
				s = append(s, fmt.Sprintf("attempt %d %s (process %d): %s", a.Attempt, a.ID, a.Incarnation, crashDescribe(byCorrelation[a.ID])))
			}
			twice = append(twice, fmt.Sprintf("key %s, %s %s: %s", k, last.Method, last.Path, strings.Join(s, "; ")))
		}
		if len(with) > 0 {
			applied[k] = with[0]
		}
		if !last.answered() {
			unanswered = append(unanswered, fmt.Sprintf("key %s, %s %s: %d attempts, the last to process %d: %s", k, last.Method, last.Path, len(attempts), last.Incarnation, last.Err))
			continue
		}
		if last.Status >= 400 {
			for _, a := range with {
				what := "yet appended"
				if a != last {
					what = fmt.Sprintf("yet attempt %d %s (process %d, cut by its kill) had appended", a.Attempt, a.ID, a.Incarnation)
				}
				appendedAnyway = append(appendedAnyway, fmt.Sprintf("key %s: %s %s %s (attempt %d, process %d) answered %d %s, %s %s",
					k, last.ID, last.Method, last.Path, last.Attempt, last.Incarnation, last.Status, last.Code, what, crashDescribe(byCorrelation[a.ID])))
			}
			continue
		}
		if last.Status >= 300 {
			continue
		}
		var top int64
		var at *crashRequest
		if len(with) == 1 {
			at = with[0]
			for _, e := range byCorrelation[at.ID] {
				if e.StreamID == last.QuoteID {
					top = max(top, e.Version)
				}
			}
		}
		// A replay's events are those of an earlier attempt; a fresh
		// answer's, its own.
		if top != last.Version || at == nil || (last.Replayed != (at != last)) {
			var s []string
			for _, a := range attempts {
				s = append(s, fmt.Sprintf("attempt %d %s (process %d): %s", a.Attempt, a.ID, a.Incarnation, crashDescribe(byCorrelation[a.ID])))
			}
			lost = append(lost, fmt.Sprintf("key %s: %s %s %s (attempt %d, process %d) answered %d (replayed: %t), version %d of quote %s; the events of its attempts in the log: %s",
				k, last.ID, last.Method, last.Path, last.Attempt, last.Incarnation, last.Status, last.Replayed, last.Version, last.QuoteID, strings.Join(s, "; ")))
		}
	}
	crashReport(t, "commands whose events are in the log more than once (one Idempotency-Key, several attempts that appended)", twice)
	crashReport(t, "commands answered 2xx whose effect is not in the log, once, under the attempt the answer stands for", lost)
	crashReport(t, "commands refused whose events are in the log", appendedAnyway)
	crashReport(t, "commands that never got an answer, though the last process answers every retry", unanswered)

	// The response stored with a key is stored in the transaction of the
	// command's events: a key has a stored response if and only if its
	// command's events are in the log, at the version the stored body
	// says; and the answer to the command, replayed or not, is the stored
	// response (status, body byte for byte, ETag).
	type storedResponse struct {
		Status     int
		Body, ETag string
	}
	stored := map[string]storedResponse{}
	rows, err := pool.Query(ctx, `SELECT key, status, body, coalesce(headers->>'ETag', '') FROM idempotency_keys WHERE key LIKE 'crash-%'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var s storedResponse
		var body []byte
		if err := rows.Scan(&k, &s.Status, &body, &s.ETag); err != nil {
			t.Fatal(err)
		}
		s.Body = string(body)
		stored[k] = s
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	var storeMismatch, answerMismatch []string
	for k, s := range stored {
		if byKey[k] == nil {
			storeMismatch = append(storeMismatch, fmt.Sprintf("key %s, which no client sent, has a stored response %d %s", k, s.Status, s.Body))
		}
	}
	for _, k := range keys {
		last := byKey[k][len(byKey[k])-1]
		s, isStored := stored[k]
		a := applied[k]
		switch {
		case a != nil && !isStored:
			storeMismatch = append(storeMismatch, fmt.Sprintf("key %s: attempt %d %s %s %s appended %s, yet no response is stored for the key",
				k, a.Attempt, a.ID, a.Method, a.Path, crashDescribe(byCorrelation[a.ID])))
		case a == nil && isStored:
			storeMismatch = append(storeMismatch, fmt.Sprintf("key %s (%s %s): a response %d %q is stored, yet no attempt appended anything", k, last.Method, last.Path, s.Status, s.Body))
		case a != nil:
			var ref struct {
				QuoteID string `json:"quote_id"`
				Version int64  `json:"version"`
			}
			_ = json.Unmarshal([]byte(s.Body), &ref)
			var top int64
			for _, e := range byCorrelation[a.ID] {
				if e.StreamID == ref.QuoteID {
					top = max(top, e.Version)
				}
			}
			if top == 0 || top != ref.Version || s.ETag != fmt.Sprintf(`"%d"`, ref.Version) {
				storeMismatch = append(storeMismatch, fmt.Sprintf("key %s: the stored response %d %s %q does not name the version its events reached: %s",
					k, s.Status, s.ETag, s.Body, crashDescribe(byCorrelation[a.ID])))
			}
		}
		if last.answered() && last.Status < 300 && (!isStored || last.Status != s.Status || last.Body != s.Body || last.ETag != s.ETag) {
			answerMismatch = append(answerMismatch, fmt.Sprintf("key %s: %s %s %s (attempt %d, replayed: %t) answered %d %s %q; stored: %t %d %s %q",
				k, last.ID, last.Method, last.Path, last.Attempt, last.Replayed, last.Status, last.ETag, last.Body, isStored, s.Status, s.ETag, s.Body))
		}
	}
	crashReport(t, "keys whose stored response and events disagree", storeMismatch)
	crashReport(t, "commands answered 2xx with other than the response stored for their key", answerMismatch)

	// Every event of the run belongs to an attempt of a command answered
	// 2xx, of this run.
	byID := map[string]*crashRequest{}
	for _, r := range reqs {
		byID[r.ID] = r
	}
	var strays []string
	for _, e := range events {
		if e.Position <= imported {
			continue
		}
		r := byID[e.CorrelationID]
		if r == nil || !r.Command || (final(r).answered() && final(r).Status >= 300) {
			strays = append(strays, fmt.Sprintf("%s v%d %s (correlation id %q)", e.StreamID, e.Version, e.Type, e.CorrelationID))
		}
	}
	crashReport(t, "events of the run that no command answered 2xx (or cut by a kill) appended", strays)

	// A command appends all its events or none, even when a kill cuts it:
	// an order submitted amends the customer's subscription in the same
	// transaction.
	var halves []string
	for id, evs := range byCorrelation {
		submitted := slices.ContainsFunc(evs, func(e crashEvent) bool { return e.Type == "OrderSubmitted" })
		amended := slices.ContainsFunc(evs, func(e crashEvent) bool { return e.Type == "SubscriptionAmended" })
		if submitted != amended {
			halves = append(halves, fmt.Sprintf("%s: %s", id, crashDescribe(evs)))
		}
	}
	crashReport(t, "commands with half their events in the log (OrderSubmitted without SubscriptionAmended, or the reverse)", halves)

	// (d) The relay delivered every event at least once, and nothing else.
	missing := crashStrings(t, pool, `SELECT e.stream_id || ' v' || e.version || ' ' || e.event_id::text FROM events e
WHERE NOT EXISTS (SELECT 1 FROM watermill_upsell_events m WHERE m.uuid = e.event_id::text) ORDER BY e.position`)
	foreign := crashStrings(t, pool, `SELECT DISTINCT m.uuid FROM watermill_upsell_events m
WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id::text = m.uuid) ORDER BY m.uuid`)
	crashReport(t, "events the relay never published to the topic", missing)
	crashReport(t, "messages of the topic that are no event of the log", foreign)
	var messages, distinct int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT uuid) FROM watermill_upsell_events`).Scan(&messages, &distinct); err != nil {
		t.Fatal(err)
	}
	// A consumer reading the topic from the start sees every event once
	// after de-duplication on the message UUID, each stream in order.
	deliveries := topicDeliveries(t, pool, len(events))
	dups := checkExactlyOnce(t, pool, deliveries)

	// (c) Every read model equals its rebuild from the log.
	waitLogSettled(t, pool)
	tables := []struct{ table, key string }{{"quote_views", "quote_id"}, {"customer_views", "customer_id"}}
	live := map[string]string{}
	counts := map[string]int{}
	for _, tb := range tables {
		live[tb.table], counts[tb.table] = snapshot(t, pool, tb.table, tb.key)
	}
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"rebuild"}, envWith(url), &out, &errOut); code != 0 {
		t.Fatalf("rebuild: code %d\n%s\n%s", code, out.String(), errOut.String())
	}
	if strings.Contains(out.String(), "wait behind a transaction") {
		t.Fatalf("the rebuild did not read the whole log:\n%s", out.String())
	}
	for _, tb := range tables {
		rebuilt, n := snapshot(t, pool, tb.table, tb.key)
		if rebuilt != live[tb.table] {
			t.Errorf("%s as served (%d rows) differs from its rebuild from the log (%d rows):\n%s", tb.table, counts[tb.table], n,
				crashFirstDifference(live[tb.table], rebuilt))
		}
	}
	if q := counts["quote_views"]; q == 0 || counts["customer_views"] != len(data.File.Customers) {
		t.Errorf("%d quote_views rows, %d customer_views rows for %d customers", q, counts["customer_views"], len(data.File.Customers))
	}

	var errorLines int
	for _, l := range logs {
		errorLines += strings.Count(l.String(), "level=ERROR")
	}
	t.Logf("%d serve processes killed with SIGKILL over %s (2xx commands per process: %v), then one stopped with SIGTERM", crashKills, loadTime.Round(time.Millisecond), perProcess)
	t.Logf("%d requests from %d clients: %d command requests (%d answered 2xx, %d refused 4xx, %d failed 5xx, %d without an answer, of which %d took effect) and %d reads",
		len(reqs), crashClients, commands, ok2xx, refused, failed5xx, noAnswer, noAnswerApplied, gets)
	t.Logf("%d commands (Idempotency-Keys), %d stored responses; %d retries of commands a kill cut (%d cut again): %d replays of a command that had committed before the kill (Idempotent-Replayed), %d executed fresh (%d answered 2xx, %d refused 4xx)",
		len(keys), len(stored), retries, retriesCut, replays, fresh2xx+fresh4xx, fresh2xx, fresh4xx)
	t.Logf("%d events in the log (%d imported, %d appended during the run); the topic has %d messages (%d distinct); a consumer from its start got %d deliveries, %d of them duplicates; %d level=ERROR log lines",
		len(events), crashCountUpTo(events, imported), len(events)-crashCountUpTo(events, imported), messages, distinct, len(deliveries), dups, errorLines)
	if noAnswer == 0 || retries == 0 {
		t.Errorf("no kill cut a command in flight: the test did not test crashes")
	}
	if replays == 0 {
		t.Logf("no command cut by a kill had committed: no retry was replayed, this run did not test the replay across a kill")
	}
}

// crashEvent is an event as the crash test checks it.
type crashEvent struct {
	ID, StreamID, Type, CorrelationID string
	Version, Position                 int64
}

// crashEvents is every event of the log, in log order.
func crashEvents(t *testing.T, pool *pgxpool.Pool) []crashEvent {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event_id::text, stream_id, event_type, coalesce(metadata->>'correlation_id', ''), version, position
FROM events ORDER BY transaction_id, position`)
	if err != nil {
		t.Fatal(err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (crashEvent, error) {
		var e crashEvent
		err := row.Scan(&e.ID, &e.StreamID, &e.Type, &e.CorrelationID, &e.Version, &e.Position)
		return e, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// crashCountUpTo counts the events at positions up to position.
func crashCountUpTo(events []crashEvent, position int64) int {
	n := 0
	for _, e := range events {
		if e.Position <= position {
			n++
		}
	}
	return n
}

func crashDescribe(events []crashEvent) string {
	if len(events) == 0 {
		return "none"
	}
	var s []string
	for _, e := range events {
		s = append(s, fmt.Sprintf("%s v%d %s", e.StreamID, e.Version, e.Type))
	}
	return strings.Join(s, ", ")
}

// crashReport fails the test with the first few of problems, and how many
// there are.
func crashReport(t *testing.T, what string, problems []string) {
	t.Helper()
	if len(problems) == 0 {
		return
	}
	sort.Strings(problems)
	t.Errorf("%d %s; the first:\n%s", len(problems), what, strings.Join(problems[:min(len(problems), 10)], "\n"))
}

// crashFirstDifference shows where two snapshots (JSON arrays of rows) part.
func crashFirstDifference(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	from := max(0, i-200)
	return fmt.Sprintf("served  ...%s...\nrebuilt ...%s...", a[from:min(len(a), i+200)], b[from:min(len(b), i+200)])
}

// crashStrings runs a query of one text column and returns its rows.
func crashStrings(t *testing.T, pool *pgxpool.Pool, sql string) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), sql)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}
