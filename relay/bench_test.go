package relay_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/relay"
)

// benchPayload is the ~300-byte payload of eventstore's BenchmarkAppend and
// scripts/bench-append.sh.
const benchPayload = `{"quote_id":"6f1c2a9e-4b7d-4e21-9a3f-2c8d5e7b1a04","customer_id":"2b8e4f6a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",` +
	`"product_id":"backup-m365","term_type":"annual","prior_quantity":682,"new_quantity":700,` +
	`"prior_unit_price":"3.25","current_unit_price":"3.10","currency":"USD","reason":"seat increase requested by MSP"}`

// BenchmarkRelaySQL measures how fast the relay drains a backlog of b.N
// events into the SQL topic: from an empty checkpoint until it reaches the
// log's head. Run it with a fixed count: -benchtime 50000x.
func BenchmarkRelaySQL(b *testing.B) {
	benchmarkRelay(b, "postgres")
}

// BenchmarkRelayNATS is BenchmarkRelaySQL to NATS JetStream (NATS_URL, else
// nats://127.0.0.1:4222), on a stream of its own.
func BenchmarkRelayNATS(b *testing.B) {
	url := os.Getenv("NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	benchmarkRelay(b, url)
}

func benchmarkRelay(b *testing.B, publish string) {
	ctx := b.Context()
	pool := testdb.EmptyPool(b)
	t, err := relay.ParseTransport(publish)
	if err != nil {
		b.Fatal(err)
	}
	if t.Kind == "nats" {
		t.Topic = "upsell_bench_" + uuid.NewString()[:8]
		b.Cleanup(func() { deleteStream(b, t) })
	}
	head := preload(b, pool, b.N)
	pub, closeConn, err := t.Publisher(ctx, pool, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer closeConn()
	defer pub.Close()
	r := relay.New(pool, t, pub, slog.New(slog.DiscardHandler), relay.Options{})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- r.Run(runCtx) }()
	for {
		at, err := relay.Checkpoint(ctx, pool, t)
		if err != nil {
			b.Fatal(err)
		}
		if !at.Less(head) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// preload appends n events in streams of 100, and returns the log's head
// once all are below the horizon.
func preload(b *testing.B, pool *pgxpool.Pool, n int) eventstore.Cursor {
	b.Helper()
	store := eventstore.New(pool)
	meta := eventstore.Metadata{MSPID: "msp-0042", UserID: "user-0815", CorrelationID: uuid.NewString()}
	for left := n; left > 0; left -= 100 {
		events := make([]eventstore.NewEvent, min(left, 100))
		for i := range events {
			events[i] = eventstore.NewEvent{Type: "SeatsChanged", Data: json.RawMessage(benchPayload), Metadata: meta}
		}
		if _, err := store.Append(b.Context(), eventstore.Append{StreamID: uuid.NewString(), StreamType: "bench", Events: events}); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var count int
		head, err := store.Head(b.Context())
		if err == nil {
			err = pool.QueryRow(b.Context(), `SELECT count(*) FROM events WHERE (transaction_id, position) <= ($1::xid8, $2::bigint)`,
				head.TransactionID, head.Position).Scan(&count)
		}
		if err != nil {
			b.Fatal(err)
		}
		if count == n {
			return head
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d events below the log's horizon after a minute", count, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func deleteStream(b *testing.B, t relay.Transport) {
	conn, err := nats.Connect(t.URL)
	if err != nil {
		b.Error(err)
		return
	}
	defer conn.Close()
	js, err := conn.JetStream()
	if err == nil {
		err = js.DeleteStream(t.Topic)
	}
	if err != nil {
		b.Errorf("delete stream %s: %v", t.Topic, err)
	}
}
