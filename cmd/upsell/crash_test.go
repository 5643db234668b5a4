package main

import (
	"bytes"
	"context"
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
//   - every command answered 2xx is in the log, under its request id as
//     correlation id, at the quote version the answer reported;
//   - no command answered 4xx or 5xx appended anything, and every event
//     appended during the run belongs to a command answered 2xx or not
//     answered at all (cut by a kill: either outcome is allowed), all of
//     its events or none;
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
	stopClients()
	loadTime := time.Since(start)

	// A last process catches up: the customers projector and the relay.
	last := startCrashServe(t, url)
	logs = append(logs, last.stderr)
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

	// The answers are those the flows expect: a server that was killed
	// and started again refuses nothing it should accept, and fails
	// nothing (no 5xx).
	var commands, ok2xx, refused, failed5xx, noAnswer, noAnswerApplied, gets int
	var unexpected []string
	for _, r := range reqs {
		if !r.Command {
			gets++
		} else {
			commands++
		}
		switch {
		case !r.answered():
			if r.Command {
				noAnswer++
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
		if r.Status != r.Want || r.Err != "" {
			unexpected = append(unexpected, fmt.Sprintf("%s %s %s (process %d): %d %s, want %d %s: %s",
				r.ID, r.Method, r.Path, r.Incarnation, r.Status, r.Code, r.Want, r.Err, r.Body[:min(len(r.Body), 300)]))
		}
	}
	crashReport(t, "answers the flow did not expect", unexpected)

	// (a) Every command answered 2xx is in the log at the version it
	// answered; (b) no command answered 4xx/5xx appended anything.
	var lost, appendedAnyway []string
	for _, r := range reqs {
		if !r.Command || !r.answered() {
			continue
		}
		evs := byCorrelation[r.ID]
		if r.Status >= 400 {
			if len(evs) > 0 {
				appendedAnyway = append(appendedAnyway, fmt.Sprintf("%s %s %s answered %d %s, yet appended %s", r.ID, r.Method, r.Path, r.Status, r.Code, crashDescribe(evs)))
			}
			continue
		}
		if r.Status >= 300 {
			continue
		}
		var top int64
		for _, e := range evs {
			if e.StreamID == r.QuoteID {
				top = max(top, e.Version)
			}
		}
		if top != r.Version {
			lost = append(lost, fmt.Sprintf("%s %s %s (process %d) answered %d, version %d of quote %s; its events in the log: %s",
				r.ID, r.Method, r.Path, r.Incarnation, r.Status, r.Version, r.QuoteID, crashDescribe(evs)))
		}
	}
	crashReport(t, "commands answered 2xx whose effect is not in the log", lost)
	crashReport(t, "commands refused whose events are in the log", appendedAnyway)

	// Every event of the run belongs to a command answered 2xx or not at
	// all, of this run.
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
		if r == nil || !r.Command || (r.answered() && r.Status >= 300) {
			strays = append(strays, fmt.Sprintf("%s v%d %s (correlation id %q)", e.StreamID, e.Version, e.Type, e.CorrelationID))
		}
	}
	crashReport(t, "events of the run that no command answered 2xx or cut by a kill appended", strays)

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
	var missing, foreign []string
	rows, err := pool.Query(ctx, `SELECT e.stream_id || ' v' || e.version || ' ' || e.event_id::text FROM events e
WHERE NOT EXISTS (SELECT 1 FROM watermill_upsell_events m WHERE m.uuid = e.event_id::text) ORDER BY e.position`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		missing = append(missing, s)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	rows, err = pool.Query(ctx, `SELECT DISTINCT m.uuid FROM watermill_upsell_events m
WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id::text = m.uuid) ORDER BY m.uuid`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		foreign = append(foreign, s)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
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
	t.Logf("%d requests from %d clients: %d commands (%d answered 2xx, %d refused 4xx, %d failed 5xx, %d without an answer, of which %d took effect) and %d reads",
		len(reqs), crashClients, commands, ok2xx, refused, failed5xx, noAnswer, noAnswerApplied, gets)
	t.Logf("%d events in the log (%d imported, %d appended during the run); the topic has %d messages (%d distinct); a consumer from its start got %d deliveries, %d of them duplicates; %d level=ERROR log lines",
		len(events), crashCountUpTo(events, imported), len(events)-crashCountUpTo(events, imported), messages, distinct, len(deliveries), dups, errorLines)
	if noAnswer == 0 {
		t.Errorf("no kill cut a command in flight: the test did not test crashes")
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
