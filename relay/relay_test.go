package relay_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/projections"
	"github.com/upsell-dev/upsell/relay"
)

// Events appended to many streams reach a consumer group of the SQL topic
// each exactly once, each stream in version order, and each message is the
// event's message as NewMessage makes it; Run returns nil when its context
// ends.
func TestRelayPublishesTheLogToTheSQLTopic(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	tr := sqlTransport(t)
	appendMany(t, pool, "sql-a", 12, 9)
	c := consume(t, pool, tr)
	r := startRelay(t, pool, tr, "relay", relay.Options{BatchSize: 7})
	appendMany(t, pool, "sql-b", 8, 6) // while it runs
	want := allEvents(t, pool)
	if len(want) != 12*9+8*6 {
		t.Fatalf("%d events in the log", len(want))
	}
	all, dups := checkDelivered(t, c, want)
	if dups != 0 {
		t.Errorf("%d duplicates without any crash", dups)
	}
	// One relay, no crash: the topic is the log, in log order.
	for i, d := range all {
		if i < len(want) && d.uuid != want[i].ID.String() {
			t.Fatalf("delivery %d is %s v%d, the log's event %d is %s v%d", i, d.env.StreamID, d.env.StreamVersion, i, want[i].StreamID, want[i].Version)
		}
	}
	// What travelled is the message NewMessage makes, metadata and payload.
	byID := map[string]eventstore.Event{}
	for _, e := range want {
		byID[e.ID.String()] = e
	}
	for _, d := range all {
		m, err := relay.NewMessage(byID[d.uuid])
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(d.metadata, map[string]string(m.Metadata)) || !jsonEqual(t, d.payload, m.Payload) {
			t.Fatalf("delivered %s:\n metadata %v\n payload %s\nwant\n metadata %v\n payload %s", d.uuid, d.metadata, d.payload, m.Metadata, m.Payload)
		}
	}
	at := waitCaughtUp(t, pool, tr)
	if at != cursorOf(want[len(want)-1]) {
		t.Errorf("checkpoint %s, the last event at %s", at, cursorOf(want[len(want)-1]))
	}
	if got := r.published.Load(); got != int64(len(want)) {
		t.Errorf("OnPublished was told %d events, %d were published", got, len(want))
	}
	if r.name != "relay" || r.r.Name() != "relay.postgres" {
		t.Errorf("Name() = %q, want relay.postgres", r.r.Name())
	}
	r.stop() // fails the test unless Run returns nil
	r.noErrors()
	if n := topicRows(t, pool); n != len(want) {
		t.Errorf("%d rows in the SQL topic, %d events", n, len(want))
	}
}

func topicRows(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM watermill_upsell_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// crashAt returns an AfterPublish that lets the first n-1 batches through,
// recording where each ended, and then plays a crash on batch n and every
// later one: it calls crash and returns what crash returns. The batch's
// events are sent on the returned channel once.
func crashAt(n int, crash func() error) (func(context.Context, []eventstore.Event) error, *[]eventstore.Cursor, chan []eventstore.Event) {
	var mu sync.Mutex
	var calls int
	var ends []eventstore.Cursor
	crashed := make(chan []eventstore.Event, 1)
	return func(_ context.Context, events []eventstore.Event) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls < n {
			ends = append(ends, cursorOf(events[len(events)-1]))
			return nil
		}
		if calls == n {
			crashed <- append([]eventstore.Event(nil), events...)
		}
		return crash()
	}, &ends, crashed
}

// A relay that dies after publishing a batch and before storing its
// checkpoint leaves the checkpoint where it was; the next relay publishes
// the batch again. The consumer sees the duplicates on the wire, and after
// de-duplication each event once, in per-stream order, none missing.
func TestRelayKilledBetweenPublishAndCheckpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		crash func(cancel context.CancelFunc) func() error
	}{
		{"the batch fails", func(context.CancelFunc) func() error { return func() error { return errCrash } }},
		{"the relay's context ends", func(cancel context.CancelFunc) func() error {
			return func() error { cancel(); return nil }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := emptyPool(t)
			tr := sqlTransport(t)
			appendMany(t, pool, "kill", 10, 8)
			c := consume(t, pool, tr)

			var first *running
			var cancelFirst atomic.Pointer[context.CancelFunc]
			hook, ends, crashed := crashAt(3, tc.crash(func() { (*cancelFirst.Load())() }))
			first = startRelay(t, pool, tr, "first relay", relay.Options{BatchSize: 6, AfterPublish: hook})
			cancelFirst.Store(&first.cancel)
			var batch []eventstore.Event
			select {
			case batch = <-crashed:
			case <-time.After(waitLimit):
				t.Fatalf("the first relay did not publish a third batch within %s", waitLimit)
			}
			first.stop()
			if got := first.batches.Load(); got != 2 {
				t.Errorf("the first relay checkpointed %d batches, want 2 before the crash", got)
			}
			at, err := relay.Checkpoint(context.Background(), pool, tr)
			if err != nil {
				t.Fatal(err)
			}
			if len(*ends) != 2 || at != (*ends)[1] {
				t.Fatalf("after the crash the checkpoint is %s; the batches before it ended at %v", at, *ends)
			}
			if !at.Less(cursorOf(batch[0])) {
				t.Fatalf("the checkpoint %s moved past the crashed batch's first event %s", at, cursorOf(batch[0]))
			}
			// The crashed batch was published: the consumer gets it.
			c.waitFor(batch)

			second := startRelay(t, pool, tr, "second relay", relay.Options{BatchSize: 6})
			appendMany(t, pool, "after", 3, 4)
			want := allEvents(t, pool)
			all, dups := checkDelivered(t, c, want)
			if dups < len(batch) {
				t.Errorf("%d duplicates delivered, want at least the %d events of the batch published twice", dups, len(batch))
			}
			if len(all) <= len(want) {
				t.Errorf("%d deliveries of %d events: the republished batch did not reach the consumer again", len(all), len(want))
			}
			t.Logf("%d events, %d deliveries, %d duplicates (batch of %d republished)", len(want), len(all), dups, len(batch))
			waitCaughtUp(t, pool, tr)
			second.stop()
			second.noErrors()
		})
	}
}

// Transactions that commit in another order than their transaction ids
// (and positions) lose nothing on the way to the consumer; and what was
// never committed is never published.
func TestRelayOutOfOrderCommits(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"postgres", "nats"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			tr := sqlTransport(t)
			var js nats.JetStreamContext
			if kind == "nats" {
				tr, js = natsTransport(t)
			}
			pool := emptyPool(t)
			ctx := context.Background()
			c := consume(t, pool, tr)
			r := startRelay(t, pool, tr, "relay", relay.Options{BatchSize: 2})

			var rolledBack []eventstore.Event
			// Round 0 commits from the newest transaction to the oldest;
			// the others in a random order, the newest first.
			for round := range 3 {
				rolledBack = append(rolledBack, outOfOrderRound(t, pool, round)...)
			}
			appendRound(t, pool, streamIDs("last", 3))

			want := allEvents(t, pool)
			checkDelivered(t, c, want)
			waitCaughtUp(t, pool, tr)
			r.stop()
			r.noErrors()
			// The rolled-back writers' events never travelled.
			if kind == "postgres" {
				for _, e := range rolledBack {
					var n int
					if err := pool.QueryRow(ctx, `SELECT count(*) FROM watermill_upsell_events WHERE uuid = $1`, e.ID.String()).Scan(&n); err != nil {
						t.Fatal(err)
					}
					if n != 0 {
						t.Errorf("the rolled-back event %s was published %d times", e.ID, n)
					}
				}
			} else if n := streamMsgs(t, js, tr.Topic); n != uint64(len(want)) {
				t.Errorf("the stream holds %d messages, %d events were committed", n, len(want))
			}
			for _, d := range c.deliveries() {
				for _, e := range rolledBack {
					if d.uuid == e.ID.String() {
						t.Errorf("the consumer received the rolled-back event %s", e.ID)
					}
				}
			}
		})
	}
}

// outOfOrderRound has eight writers open a transaction each and append
// (taking their transaction ids and positions in turn), then commit in
// another order, with committed appends of others in between; one of them
// rolls back, and its events are returned.
func outOfOrderRound(t *testing.T, pool *pgxpool.Pool, round int) []eventstore.Event {
	t.Helper()
	const writers = 8
	store := eventstore.New(pool)
	ctx := context.Background()
	type opened struct {
		i      int
		events []eventstore.Event
	}
	ready := make(chan opened, writers)
	turn := make([]chan bool, writers) // true: commit, false: roll back
	for i := range turn {
		turn[i] = make(chan bool, 1)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			tx, err := pool.Begin(ctx)
			if err != nil {
				errs <- err
				ready <- opened{i: i}
				return
			}
			defer tx.Rollback(context.WithoutCancel(ctx))
			stream := fmt.Sprintf("ooo-%d-%02d", round, i)
			apps := []eventstore.Append{{StreamID: stream, StreamType: "relaytest", ExpectedVersion: eventstore.NoStream,
				Events: []eventstore.NewEvent{{Type: testEvent, Data: testData(stream, 1)}, {Type: testEvent, Data: testData(stream, 2)}}}}
			if i%2 == 0 { // a second stream in the same transaction
				other := fmt.Sprintf("ooo-%d-%02d-b", round, i)
				apps = append(apps, eventstore.Append{StreamID: other, StreamType: "relaytest", ExpectedVersion: eventstore.NoStream,
					Events: []eventstore.NewEvent{{Type: testEvent, Data: testData(other, 1)}}})
			}
			events, err := store.AppendTx(ctx, tx, apps...)
			if err != nil {
				errs <- err
				ready <- opened{i: i}
				return
			}
			ready <- opened{i: i, events: events}
			if <-turn[i] {
				if err := tx.Commit(ctx); err != nil {
					errs <- err
				}
			}
		})
	}
	open := make([]opened, writers)
	for range writers {
		o := <-ready
		open[o.i] = o
	}
	select {
	case err := <-errs:
		for _, c := range turn {
			c <- false
		}
		t.Fatal(err)
	default:
	}
	// The writers by transaction id, oldest first.
	byXid := make([]int, writers)
	for i := range byXid {
		byXid[i] = i
	}
	slices.SortFunc(byXid, func(a, b int) int {
		return cmp.Compare(open[a].events[0].TransactionID, open[b].events[0].TransactionID)
	})
	commitOrder := slices.Clone(byXid)
	slices.Reverse(commitOrder)
	if round > 0 {
		rest := commitOrder[1:]
		rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	}
	rolledBack := byXid[(3+round)%writers]
	for k, w := range commitOrder {
		appendRound(t, pool, []string{fmt.Sprintf("between-%d-%02d", round, k)})
		turn[w] <- w != rolledBack
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond) // let the relay read in between
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return open[rolledBack].events
}

// An event of a transaction still open is not published, even while later
// transactions commit; it is once its transaction commits.
func TestRelayWaitsForOpenTransactions(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	tr := sqlTransport(t)
	store := eventstore.New(pool)
	ctx := context.Background()
	c := consume(t, pool, tr)
	r := startRelay(t, pool, tr, "relay", relay.Options{BatchSize: 3})

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	held, err := store.AppendTx(ctx, tx, eventstore.Append{StreamID: "held", StreamType: "relaytest", ExpectedVersion: eventstore.NoStream,
		Events: []eventstore.NewEvent{{Type: testEvent, Data: testData("held", 1)}}})
	if err != nil {
		t.Fatal(err)
	}
	later := appendMany(t, pool, "later", 4, 3)
	// Give the relay time to publish what it could; nothing may pass the
	// open transaction.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, d := range c.deliveries() {
			if d.uuid == held[0].ID.String() {
				t.Fatal("an uncommitted event was published")
			}
			for _, e := range later {
				if d.uuid == e.ID.String() {
					t.Fatalf("event %s of a transaction after the open one was published before it committed", e.ID)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if at, err := relay.Checkpoint(ctx, pool, tr); err != nil || !at.Less(cursorOf(held[0])) {
		t.Fatalf("the checkpoint is at %s (%v), past the open transaction at %s", at, err, cursorOf(held[0]))
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	all, _ := checkDelivered(t, c, allEvents(t, pool))
	if all[0].uuid != held[0].ID.String() {
		t.Errorf("the first delivery is %s, want the event of the transaction that held the others back", all[0].uuid)
	}
	r.stop()
	r.noErrors()
}

// lockHolders returns the backends holding the relay's advisory lock in
// the pool's database.
func lockHolders(t *testing.T, pool *pgxpool.Pool, tr relay.Transport) []int32 {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT l.pid FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid::bigint = (hashtextextended($1, 0) >> 32) & 4294967295
    AND l.objid::bigint = hashtextextended($1, 0) & 4294967295
    AND l.objsubid = 1`, "upsell.projection."+tr.CheckpointName())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var pids []int32
	for rows.Next() {
		var pid int32
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return pids
}

// waitHolder waits until exactly one backend other than not holds the
// relay's lock, and returns it.
func waitHolder(t *testing.T, pool *pgxpool.Pool, tr relay.Transport, not int32) int32 {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		pids := lockHolders(t, pool, tr)
		if len(pids) > 1 {
			t.Fatalf("%d backends hold the lock of %s: %v", len(pids), tr.CheckpointName(), pids)
		}
		if len(pids) == 1 && pids[0] != not {
			return pids[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the lock of %s is held by %v (not wanted: %d)", waitLimit, tr.CheckpointName(), pids, not)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two relays on one transport: one leads and publishes, the other stands
// by; when the leader ends (its context, or its backend terminated), the
// standby takes over from the checkpoint and nothing is missing.
func TestRelaySingleLeaderAndTakeover(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"the leader's context ends", "the leader's backend is terminated"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			pool := emptyPool(t)
			tr := sqlTransport(t)
			appendMany(t, pool, "lead", 6, 5)
			c := consume(t, pool, tr)
			a := startRelay(t, pool, tr, "relay a", relay.Options{BatchSize: 4})
			b := startRelay(t, pool, tr, "relay b", relay.Options{BatchSize: 4})
			pid := waitHolder(t, pool, tr, 0)
			waitCaughtUp(t, pool, tr)
			appendMany(t, pool, "both", 4, 3) // while both run
			checkDelivered(t, c, allEvents(t, pool))
			waitCaughtUp(t, pool, tr)

			leader, standby := a, b
			if b.published.Load() > 0 {
				leader, standby = b, a
			}
			if standby.published.Load() != 0 {
				t.Fatalf("both relays published: %d and %d events", a.published.Load(), b.published.Load())
			}
			if pids := lockHolders(t, pool, tr); len(pids) != 1 || pids[0] != pid {
				t.Fatalf("the lock of relay.postgres is held by %v, want only %d", pids, pid)
			}
			led := leader.published.Load()

			if how == "the leader's context ends" {
				leader.stop()
			} else {
				var ok bool
				if err := pool.QueryRow(context.Background(), `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
					t.Fatalf("terminate the leader's backend %d: %v, %v", pid, ok, err)
				}
			}
			newPid := waitHolder(t, pool, tr, pid)
			before, err := relay.Checkpoint(context.Background(), pool, tr)
			if err != nil {
				t.Fatal(err)
			}
			appendMany(t, pool, "after", 5, 3)
			want := allEvents(t, pool)
			_, dups := checkDelivered(t, c, want)
			after := waitCaughtUp(t, pool, tr)
			if !before.Less(after) {
				t.Fatalf("the checkpoint did not move after the takeover: %s, then %s", before, after)
			}
			// The standby polls for the lock every 100 ms; a leader whose
			// connection was lost waits 1 s before it tries to lead again.
			if standby.published.Load() == 0 {
				t.Errorf("the standby published nothing after the leader ended (the leader published %d, then %d)", led, leader.published.Load())
			}
			if how == "the leader's context ends" && leader.published.Load() != led {
				t.Errorf("the stopped leader published more")
			}
			if pids := lockHolders(t, pool, tr); len(pids) != 1 || pids[0] != newPid {
				t.Errorf("after the takeover the lock is held by %v, want only %d", pids, newPid)
			}
			t.Logf("%d events, %d duplicates; leader %d events, standby %d", len(want), dups, leader.published.Load(), standby.published.Load())
			a.stop()
			b.stop()
			standby.noErrors()
			if how == "the leader's context ends" {
				leader.noErrors()
			}
		})
	}
}

// Lag counts the events the relay has not published: all of them before
// it runs, none once it has caught up, the new ones after it stopped.
func TestRelayLag(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	tr := sqlTransport(t)
	ctx := context.Background()
	appendMany(t, pool, "lag", 5, 4)
	lag, err := relay.Lag(ctx, pool, tr)
	if err != nil {
		t.Fatal(err)
	}
	if lag.Events != 20 || lag.Age <= 0 {
		t.Errorf("before the relay ran: %+v, want 20 events and a positive age", lag)
	}
	if at, err := relay.Checkpoint(ctx, pool, tr); err != nil || at != (eventstore.Cursor{}) {
		t.Errorf("before the relay ran its checkpoint is %s, %v; want the start of the log", at, err)
	}
	r := startRelay(t, pool, tr, "relay", relay.Options{})
	waitCaughtUp(t, pool, tr)
	if lag, err = relay.Lag(ctx, pool, tr); err != nil || lag != (projections.LagReport{}) {
		t.Errorf("caught up: %+v, %v; want no lag", lag, err)
	}
	r.stop()
	r.noErrors()
	appendRound(t, pool, streamIDs("lag-more", 3))
	if lag, err = relay.Lag(ctx, pool, tr); err != nil || lag.Events != 3 || lag.Age <= 0 {
		t.Errorf("3 events after the relay stopped: %+v, %v", lag, err)
	}
	// Another transport's relay has a lag of its own.
	other := relay.Transport{Kind: "nats", URL: "nats://127.0.0.1:1", Topic: "upsell_test_lag_" + uuid.NewString()[:8]}
	if lag, err = relay.Lag(ctx, pool, other); err != nil || lag.Events != 23 {
		t.Errorf("the lag of a relay that never ran on %s: %+v, %v; want 23", other, lag, err)
	}
}

func TestParseTransport(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "postgres", "PostgreSQL", " sql "} {
		tr, err := relay.ParseTransport(s)
		if err != nil || tr != (relay.Transport{Kind: "postgres", Topic: relay.Topic}) || tr.CheckpointName() != "relay.postgres" {
			t.Errorf("ParseTransport(%q) = %+v, %v", s, tr, err)
		}
	}
	tr, err := relay.ParseTransport("nats://127.0.0.1:4222")
	if err != nil || tr.Kind != "nats" || tr.URL != "nats://127.0.0.1:4222" || tr.Topic != "upsell_events" || tr.CheckpointName() != "relay.nats" {
		t.Errorf("ParseTransport(nats) = %+v (%s), %v", tr, tr.CheckpointName(), err)
	}
	tr.Topic = "upsell_test_x"
	if tr.CheckpointName() != "relay.nats.upsell_test_x" {
		t.Errorf("a NATS transport with its own topic has checkpoint %q", tr.CheckpointName())
	}
	tr, err = relay.ParseTransport("tls://user:secret@nats.example:4222")
	if err != nil || tr.Kind != "nats" {
		t.Errorf("ParseTransport(tls) = %+v, %v", tr, err)
	}
	if s := tr.String(); s == "" || strings.Contains(s, "secret") {
		t.Errorf("String() = %q shows the password", s)
	}
	for _, s := range []string{"bogus://x", "kafka://broker:9092", "nats://", "http://nats:4222", "nats:4222", "kafka://user:secret@broker:9092"} {
		_, err := relay.ParseTransport(s)
		if !errors.Is(err, relay.ErrBadTransport) || strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseTransport(%q): err = %v, want ErrBadTransport without the password", s, err)
		}
	}
	if _, err := relay.ParseTransport("bogus://x"); err == nil || !strings.Contains(err.Error(), `"bogus://x"`) || !strings.Contains(err.Error(), "nats://HOST:PORT") {
		t.Errorf("the refusal does not say what was given and what works: %v", err)
	}
}
