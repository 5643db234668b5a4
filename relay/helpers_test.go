package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/relay"
)

// Every test that runs a relay gets an empty database of its own
// (testdb.Empty): the relay reads the whole log, and its checkpoint, its
// lock and the SQL topic are per database. What no database isolates is
// the log's horizon: the log and the SQL topic are read only below the
// oldest transaction open anywhere on the server, so other tests can hold
// them back for a while. Every wait polls, with waitLimit as its deadline.

// waitLimit bounds every wait for something asynchronous; generous, since
// it only matters when the test is about to fail anyway.
const waitLimit = 30 * time.Second

// emptyPool is a migrated database of the test's own, dropped after it.
func emptyPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testdb.EmptyPool(t)
}

// sqlTransport is the default transport: the SQL topic in the database.
func sqlTransport(t *testing.T) relay.Transport {
	t.Helper()
	tr, err := relay.ParseTransport("postgres")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// testEvent is the type of the events the tests append in bulk: unknown to
// the domain, so the relay publishes it as stored.
const testEvent = "RelayTestHappened"

func testData(stream string, n int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"stream": %q, "n": %d}`, stream, n))
}

// appendRound appends one event to each of the streams, each in its own
// transaction, and returns them.
func appendRound(t *testing.T, pool *pgxpool.Pool, streams []string) []eventstore.Event {
	t.Helper()
	store := eventstore.New(pool)
	var out []eventstore.Event
	for _, s := range streams {
		events, err := store.Append(context.Background(), eventstore.Append{
			StreamID: s, StreamType: "relaytest", ExpectedVersion: eventstore.AnyVersion,
			Events: []eventstore.NewEvent{{Type: testEvent, Data: testData(s, 0)}},
		})
		if err != nil {
			t.Fatalf("append to %s: %v", s, err)
		}
		out = append(out, events...)
	}
	return out
}

// appendMany appends, per stream, perStream events in appends of one to
// three events, interleaving the streams and now and then appending to two
// streams in one transaction, and returns what it appended.
func appendMany(t *testing.T, pool *pgxpool.Pool, prefix string, streams, perStream int) []eventstore.Event {
	t.Helper()
	store := eventstore.New(pool)
	ids := streamIDs(prefix, streams)
	left := make([]int, streams)
	for i := range left {
		left[i] = perStream
	}
	var out []eventstore.Event
	for round := 0; ; round++ {
		var apps []eventstore.Append
		for i, s := range ids {
			if left[i] == 0 {
				continue
			}
			n := min(left[i], 1+(round+i)%3)
			left[i] -= n
			a := eventstore.Append{StreamID: s, StreamType: "relaytest", ExpectedVersion: eventstore.AnyVersion}
			for j := range n {
				a.Events = append(a.Events, eventstore.NewEvent{Type: testEvent, Data: testData(s, perStream-left[i]-n+j+1)})
			}
			apps = append(apps, a)
		}
		if len(apps) == 0 {
			return out
		}
		for len(apps) > 0 {
			k := 1
			if len(apps) > 1 && (round+len(apps))%4 == 0 {
				k = 2 // two streams in one transaction
			}
			events, err := store.Append(context.Background(), apps[:k]...)
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			out = append(out, events...)
			apps = apps[k:]
		}
	}
}

func streamIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%02d", prefix, i+1)
	}
	return ids
}

// allEvents is every committed event of the database, in log order.
func allEvents(t *testing.T, pool *pgxpool.Pool) []eventstore.Event {
	t.Helper()
	events, _, err := eventstore.ReadCommittedTx(context.Background(), pool, eventstore.Cursor{}, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// lastCursor is the cursor of the last committed event in the log.
func lastCursor(t *testing.T, pool *pgxpool.Pool) eventstore.Cursor {
	t.Helper()
	events := allEvents(t, pool)
	if len(events) == 0 {
		return eventstore.Cursor{}
	}
	return cursorOf(events[len(events)-1])
}

func cursorOf(e eventstore.Event) eventstore.Cursor {
	return eventstore.Cursor{TransactionID: e.TransactionID, Position: e.Position}
}

// recordLog keeps what is logged at level Warn or above.
type recordLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *recordLog) Enabled(_ context.Context, level slog.Level) bool { return level >= slog.LevelWarn }
func (l *recordLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, b.String())
	return nil
}
func (l *recordLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *recordLog) WithGroup(string) slog.Handler      { return l }

func (l *recordLog) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.msgs {
		if strings.HasPrefix(m, "ERROR") {
			out = append(out, m)
		}
	}
	return out
}

// running is a relay started in the background.
type running struct {
	t         *testing.T
	name      string
	r         *relay.Relay
	cancel    context.CancelFunc
	done      chan error
	published atomic.Int64 // events in checkpointed batches (OnPublished)
	batches   atomic.Int64
	log       *recordLog
}

// startRelay runs a relay of pool on tr with its own publisher until stop
// or the end of the test. opts.OnPublished is wrapped to count.
func startRelay(t *testing.T, pool *pgxpool.Pool, tr relay.Transport, name string, opts relay.Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, name: name, cancel: cancel, done: make(chan error, 1), log: &recordLog{}}
	log := slog.New(r.log)
	pub, closeConn, err := tr.Publisher(ctx, pool, log)
	if err != nil {
		cancel()
		t.Fatalf("%s: open the publisher: %v", name, err)
	}
	onPublished := opts.OnPublished
	opts.OnPublished = func(n int) {
		r.published.Add(int64(n))
		r.batches.Add(1)
		if onPublished != nil {
			onPublished(n)
		}
	}
	r.r = relay.New(pool, tr, pub, log, opts)
	go func() {
		err := r.r.Run(ctx)
		_ = pub.Close()
		closeConn()
		r.done <- err
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop ends the relay and waits for Run to return; it fails the test if
// Run returns an error or does not return.
func (r *running) stop() {
	r.t.Helper()
	r.cancel()
	r.wait()
}

// wait waits for Run to return (its context ended some other way).
func (r *running) wait() {
	r.t.Helper()
	select {
	case err, ok := <-r.done:
		if !ok {
			return // already waited for
		}
		close(r.done)
		if err != nil {
			r.t.Errorf("%s: Run returned %v after its context ended, want nil", r.name, err)
		}
	case <-time.After(waitLimit):
		r.t.Fatalf("%s: Run did not return within %s of its context ending", r.name, waitLimit)
	}
}

func (r *running) noErrors() {
	r.t.Helper()
	if errs := r.log.errors(); len(errs) > 0 {
		r.t.Errorf("%s logged errors:\n%s", r.name, strings.Join(errs, "\n"))
	}
}

// waitCaughtUp waits until the relay of tr has checkpointed the last
// committed event, and returns its checkpoint.
func waitCaughtUp(t *testing.T, pool *pgxpool.Pool, tr relay.Transport) eventstore.Cursor {
	t.Helper()
	want := lastCursor(t, pool)
	deadline := time.Now().Add(waitLimit)
	for {
		at, err := relay.Checkpoint(context.Background(), pool, tr)
		if err != nil {
			t.Fatal(err)
		}
		if !at.Less(want) {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay %s is at %s after %s, the log's last event at %s", tr.CheckpointName(), at, waitLimit, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// delivery is one message as a consumer received it.
type delivery struct {
	uuid     string
	env      relay.Envelope
	metadata map[string]string
	payload  []byte
}

// consumer reads the topic of a transport for one consumer group and
// records every delivery, acknowledging each.
type consumer struct {
	t      *testing.T
	mu     sync.Mutex
	got    []delivery
	errs   []string
	sub    message.Subscriber
	close  func()
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// consume subscribes a new consumer group to tr's topic, from its first
// message, until stop or the end of the test.
func consume(t *testing.T, pool *pgxpool.Pool, tr relay.Transport) *consumer {
	t.Helper()
	return consumeGroup(t, pool, tr, relay.SubscribeOptions{Group: "test-" + uuid.NewString()[:8], FromStart: true})
}

func consumeGroup(t *testing.T, pool *pgxpool.Pool, tr relay.Transport, opts relay.SubscribeOptions) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{t: t, cancel: cancel, done: make(chan struct{})}
	sub, closeConn, err := tr.Subscriber(ctx, pool, opts, slog.New(&recordLog{}))
	if err != nil {
		cancel()
		t.Fatalf("subscribe %s: %v", opts.Group, err)
	}
	c.sub, c.close = sub, closeConn
	msgs, err := sub.Subscribe(ctx, tr.Topic)
	if err != nil {
		cancel()
		_ = sub.Close()
		closeConn()
		t.Fatalf("subscribe %s to %s: %v", opts.Group, tr.Topic, err)
	}
	go func() {
		defer close(c.done)
		for m := range msgs {
			env, err := relay.ParseEnvelope(m)
			c.mu.Lock()
			if err != nil {
				c.errs = append(c.errs, err.Error())
			}
			md := map[string]string{}
			for k, v := range m.Metadata {
				md[k] = v
			}
			c.got = append(c.got, delivery{uuid: m.UUID, env: env, metadata: md, payload: append([]byte(nil), m.Payload...)})
			c.mu.Unlock()
			m.Ack()
		}
	}()
	t.Cleanup(c.stop)
	return c
}

// stop closes the subscriber first, so that it stores the position of
// what was acknowledged (cancelling the subscription's context instead
// rolls back the acknowledgements of the SQL subscriber's current batch),
// then ends the rest.
func (c *consumer) stop() {
	c.once.Do(func() {
		if err := c.sub.Close(); err != nil {
			c.t.Errorf("close the subscriber: %v", err)
		}
		select {
		case <-c.done:
		case <-time.After(waitLimit):
			c.t.Errorf("the consumer did not stop within %s", waitLimit)
		}
		c.close()
		c.cancel()
	})
}

func (c *consumer) deliveries() []delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]delivery(nil), c.got...)
}

// distinct is the deliveries with the duplicates dropped (de-duplication on
// the message UUID, keeping the first copy), and how many were dropped.
func distinct(all []delivery) (first []delivery, dups int) {
	seen := map[string]bool{}
	for _, d := range all {
		if seen[d.uuid] {
			dups++
			continue
		}
		seen[d.uuid] = true
		first = append(first, d)
	}
	return first, dups
}

// waitFor waits until every event of want has been delivered at least
// once, and returns every delivery so far.
func (c *consumer) waitFor(want []eventstore.Event) []delivery {
	c.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := c.deliveries()
		seen := map[string]bool{}
		for _, d := range got {
			seen[d.uuid] = true
		}
		missing := 0
		var example eventstore.Event
		for _, e := range want {
			if !seen[e.ID.String()] {
				if missing == 0 {
					example = e
				}
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("after %s the consumer has %d deliveries and still misses %d of %d events, e.g. %s v%d at %s (%s)",
				waitLimit, len(got), missing, len(want), example.StreamID, example.Version, cursorOf(example), example.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkDelivered checks that what the consumer received is, once
// de-duplicated on the UUID, exactly want (nothing missing, nothing
// extra), each stream in version order, every message well formed; it
// returns the deliveries and the duplicates dropped.
func checkDelivered(t *testing.T, c *consumer, want []eventstore.Event) (all []delivery, dups int) {
	t.Helper()
	all = c.waitFor(want)
	c.mu.Lock()
	errs := append([]string(nil), c.errs...)
	c.mu.Unlock()
	if len(errs) > 0 {
		t.Errorf("%d messages had no envelope, e.g. %s", len(errs), errs[0])
	}
	byID := map[string]eventstore.Event{}
	for _, e := range want {
		byID[e.ID.String()] = e
	}
	first, dups := distinct(all)
	if len(first) != len(want) {
		t.Errorf("%d distinct events delivered, %d appended", len(first), len(want))
	}
	last := map[string]int64{}
	for i, d := range first {
		e, ok := byID[d.uuid]
		if !ok {
			t.Errorf("delivery %d: message %s is not an event of this log", i, d.uuid)
			continue
		}
		if d.env.EventID != d.uuid || d.env.StreamID != e.StreamID || d.env.StreamVersion != e.Version || d.env.Position != e.Position {
			t.Errorf("delivery %d: envelope %+v does not match the event %s v%d at %d (%s)", i, d.env, e.StreamID, e.Version, e.Position, e.ID)
		}
		if d.env.StreamVersion != last[e.StreamID]+1 {
			t.Errorf("delivery %d: stream %s version %d after version %d: out of order or one missing", i, e.StreamID, d.env.StreamVersion, last[e.StreamID])
		}
		last[e.StreamID] = max(last[e.StreamID], d.env.StreamVersion)
	}
	if t.Failed() {
		t.Logf("%d deliveries, %d distinct, %d duplicates", len(all), len(first), dups)
	}
	return all, dups
}

// errCrash is what AfterPublish returns to play a relay dying between its
// publish and its checkpoint.
var errCrash = errors.New("simulated crash between publish and checkpoint")
