package relay_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/relay"
)

// The NATS server (JetStream) is shared: every test publishes to a stream
// of its own, upsell_test_<random>, deleted when it ends. NATS_URL names
// another server; an unreachable one fails the test.

func natsURL() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// natsTransport is the NATS transport with a topic of the test's own, and
// a JetStream context to inspect its stream.
func natsTransport(t *testing.T) (relay.Transport, nats.JetStreamContext) {
	t.Helper()
	tr, err := relay.ParseTransport(natsURL())
	if err != nil {
		t.Fatalf("NATS_URL: %v", err)
	}
	tr.Topic = "upsell_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	conn, err := nats.Connect(tr.URL, nats.Timeout(5*time.Second), nats.Name("upsell relay test"))
	if err != nil {
		t.Fatalf("NATS is not reachable at %s (%v): start nats-server -js there, or set NATS_URL", tr.URL, err)
	}
	js, err := conn.JetStream()
	if err != nil {
		conn.Close()
		t.Fatalf("NATS at %s: JetStream: %v", tr.URL, err)
	}
	if _, err := js.AccountInfo(); err != nil {
		conn.Close()
		t.Fatalf("NATS at %s has no JetStream (%v): start it with -js", tr.URL, err)
	}
	t.Cleanup(func() {
		if err := js.DeleteStream(tr.Topic); err != nil && !errors.Is(err, nats.ErrStreamNotFound) {
			t.Errorf("delete the test stream %s: %v", tr.Topic, err)
		}
		conn.Close()
	})
	return tr, js
}

// streamMsgs is how many messages the stream holds.
func streamMsgs(t *testing.T, js nats.JetStreamContext, topic string) uint64 {
	t.Helper()
	info, err := js.StreamInfo(topic)
	if err != nil {
		t.Fatalf("stream %s: %v", topic, err)
	}
	return info.State.Msgs
}

// Through NATS JetStream: every event once, in per-stream order, each
// message as NewMessage makes it, one stream message per event; the
// stream is made with its de-duplication window.
func TestNATSRelayEndToEnd(t *testing.T) {
	t.Parallel()
	tr, js := natsTransport(t)
	pool := emptyPool(t)
	appendMany(t, pool, "nats-a", 8, 6)
	c := consume(t, pool, tr) // makes the stream
	info, err := js.StreamInfo(tr.Topic)
	if err != nil {
		t.Fatalf("the subscriber did not make the stream %s: %v", tr.Topic, err)
	}
	if info.Config.Duplicates != relay.DedupWindow || len(info.Config.Subjects) != 1 || info.Config.Subjects[0] != tr.Topic {
		t.Errorf("stream config: duplicates %s, subjects %v; want %s and [%s]", info.Config.Duplicates, info.Config.Subjects, relay.DedupWindow, tr.Topic)
	}
	r := startRelay(t, pool, tr, "relay", relay.Options{BatchSize: 10})
	if r.r.Name() != "relay.nats."+tr.Topic {
		t.Errorf("Name() = %q", r.r.Name())
	}
	appendMany(t, pool, "nats-b", 5, 4)
	want := allEvents(t, pool)
	all, dups := checkDelivered(t, c, want)
	if dups != 0 {
		t.Errorf("%d duplicates without a crash", dups)
	}
	byID := map[string]eventstore.Event{}
	for _, e := range want {
		byID[e.ID.String()] = e
	}
	for _, d := range all {
		m, err := relay.NewMessage(byID[d.uuid])
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(d.metadata, map[string]string(m.Metadata)) || string(d.payload) != string(m.Payload) {
			t.Fatalf("delivered %s:\n metadata %v\n payload %s\nwant\n metadata %v\n payload %s", d.uuid, d.metadata, d.payload, m.Metadata, m.Payload)
		}
	}
	waitCaughtUp(t, pool, tr)
	if n := streamMsgs(t, js, tr.Topic); n != uint64(len(want)) {
		t.Errorf("the stream holds %d messages, %d events were published", n, len(want))
	}
	if lag, err := relay.Lag(context.Background(), pool, tr); err != nil || lag.Events != 0 {
		t.Errorf("lag %+v, %v", lag, err)
	}
	// The SQL transport's relay is another: it has published nothing.
	if lag, err := relay.Lag(context.Background(), pool, sqlTransport(t)); err != nil || lag.Events != int64(len(want)) {
		t.Errorf("the SQL relay's lag: %+v, %v; want all %d events", lag, err, len(want))
	}
	r.stop()
	r.noErrors()
}

// A relay killed between its publish and its checkpoint publishes the
// batch again; JetStream drops the copies (same Nats-Msg-Id within the
// window), so the stream holds each event once and the consumer, after
// de-duplication or not, sees each once, in order, none missing.
func TestNATSRelayKilledBetweenPublishAndCheckpoint(t *testing.T) {
	t.Parallel()
	tr, js := natsTransport(t)
	pool := emptyPool(t)
	appendMany(t, pool, "nkill", 9, 6)
	c := consume(t, pool, tr)

	hook, ends, crashed := crashAt(3, func() error { return errCrash })
	first := startRelay(t, pool, tr, "first relay", relay.Options{BatchSize: 8, AfterPublish: hook})
	var batch []eventstore.Event
	select {
	case batch = <-crashed:
	case <-time.After(waitLimit):
		t.Fatalf("the first relay did not publish a third batch within %s", waitLimit)
	}
	first.stop()
	at, err := relay.Checkpoint(context.Background(), pool, tr)
	if err != nil {
		t.Fatal(err)
	}
	if len(*ends) != 2 || at != (*ends)[1] || !at.Less(cursorOf(batch[0])) {
		t.Fatalf("after the crash the checkpoint is %s; the batches before it ended at %v, the crashed one starts at %s", at, *ends, cursorOf(batch[0]))
	}
	published := c.waitFor(batch)
	before := streamMsgs(t, js, tr.Topic)
	if before < uint64(len(published)) {
		t.Fatalf("the stream holds %d messages, the consumer got %d", before, len(published))
	}

	second := startRelay(t, pool, tr, "second relay", relay.Options{BatchSize: 8})
	waitCaughtUp(t, pool, tr) // the crashed batch is published again
	if second.published.Load() < int64(len(batch)) {
		t.Fatalf("the second relay published %d events, not the crashed batch of %d again", second.published.Load(), len(batch))
	}
	appendMany(t, pool, "nafter", 3, 3)
	want := allEvents(t, pool)
	all, dups := checkDelivered(t, c, want)
	waitCaughtUp(t, pool, tr)
	if n := streamMsgs(t, js, tr.Topic); n != uint64(len(want)) {
		t.Errorf("after the republish the stream holds %d messages, want one per event: %d", n, len(want))
	}
	if dups != 0 {
		t.Errorf("%d duplicates reached the consumer despite JetStream's de-duplication window", dups)
	}
	t.Logf("%d events, %d deliveries; batch of %d republished; %d events published by the second relay", len(want), len(all), len(batch), second.published.Load())
	second.stop()
	second.noErrors()
}

// A NATS consumer group (durable consumer) keeps its position: stopped and
// started again it resumes, receiving what was published meanwhile and
// nothing it had; a new group without FromStart starts at the end.
func TestNATSConsumerGroupResumes(t *testing.T) {
	t.Parallel()
	tr, js := natsTransport(t)
	pool := emptyPool(t)
	testGroupResumes(t, pool, tr, func(group string) {
		if _, err := js.ConsumerInfo(tr.Topic, group); err != nil {
			t.Fatalf("the durable consumer %s of the group is gone once its subscriber closed (%v): "+
				"nats.go deletes on Unsubscribe a consumer that the subscription created, so the group cannot resume", group, err)
		}
	})
}

// The same on the SQL topic.
func TestSQLConsumerGroupResumes(t *testing.T) {
	t.Parallel()
	pool := emptyPool(t)
	testGroupResumes(t, pool, sqlTransport(t), func(string) {})
}

func testGroupResumes(t *testing.T, pool *pgxpool.Pool, tr relay.Transport, stopped func(group string)) {
	t.Helper()
	group := "resume-" + uuid.NewString()[:8]
	r := startRelay(t, pool, tr, "relay", relay.Options{})
	first := appendMany(t, pool, "r1", 4, 3)
	c := consumeGroup(t, pool, tr, relay.SubscribeOptions{Group: group, FromStart: true})
	checkDelivered(t, c, first)
	waitCaughtUp(t, pool, tr)
	c.stop()
	stopped(group)

	second := appendMany(t, pool, "r2", 3, 2)
	waitCaughtUp(t, pool, tr) // published while the group is away
	c = consumeGroup(t, pool, tr, relay.SubscribeOptions{Group: group})
	fresh := consumeGroup(t, pool, tr, relay.SubscribeOptions{Group: "fresh-" + uuid.NewString()[:8]})
	third := appendRound(t, pool, streamIDs("r3", 2))
	got := c.waitFor(append(cloneEvents(second), third...))
	got, _ = distinct(got)
	old := map[string]bool{}
	for _, e := range first {
		old[e.ID.String()] = true
	}
	for _, d := range got {
		if old[d.uuid] {
			t.Errorf("the resumed group received %s, which it had acknowledged before it stopped", d.uuid)
		}
	}
	if len(got) != len(second)+len(third) {
		t.Errorf("the resumed group received %d messages, want the %d published meanwhile and after", len(got), len(second)+len(third))
	}
	for _, d := range fresh.waitFor(third) {
		if old[d.uuid] {
			t.Errorf("a new group without FromStart received %s, published before it started", d.uuid)
		}
	}
	for _, e := range second {
		for _, d := range fresh.deliveries() {
			if d.uuid == e.ID.String() {
				t.Errorf("a new group without FromStart received %s, published before it started", d.uuid)
			}
		}
	}
	r.stop()
	r.noErrors()
}

func cloneEvents(events []eventstore.Event) []eventstore.Event {
	return append([]eventstore.Event(nil), events...)
}
