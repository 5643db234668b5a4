package eventstore_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// benchData is a typical event payload, about 300 bytes; scripts/bench-append.sh
// gives pgbench the same one.
const benchData = `{"quote_id":"6f1c2a9e-4b7d-4e21-9a3f-2c8d5e7b1a04","customer_id":"2b8e4f6a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",` +
	`"product_id":"backup-m365","term_type":"annual","prior_quantity":682,"new_quantity":700,` +
	`"prior_unit_price":"3.25","current_unit_price":"3.10","currency":"USD","reason":"seat increase requested by MSP"}`

// BenchmarkAppend measures the hot path as the service uses it: one event
// per append, 16 writers at once, each on a stream of its own.
func BenchmarkAppend(b *testing.B) {
	store := eventstore.New(testdb.Pool(b, "eventstore"))
	benchAppends(b, func(a eventstore.Append) error {
		_, err := store.Append(b.Context(), a)
		return err
	})
}

// BenchmarkAppendCommit is BenchmarkAppend through AppendCommit, as a
// command appends, with a row that commits with the events (as a read
// model's), each transaction alone and in groups (1 and 2 in flight).
func BenchmarkAppendCommit(b *testing.B) {
	pool := testdb.Pool(b, "eventstore")
	if _, err := pool.Exec(b.Context(), `CREATE TABLE IF NOT EXISTS append_commit_bench (
    stream_id text PRIMARY KEY, version bigint NOT NULL)`); err != nil && !isDuplicateTable(err) {
		b.Fatal(err)
	}
	for _, inFlight := range []int{0, 1, 2} {
		b.Run(fmt.Sprintf("group=%d", inFlight), func(b *testing.B) {
			store := eventstore.New(pool, eventstore.WithGroupCommit(inFlight, eventstore.DefaultGroupSize))
			benchAppends(b, func(a eventstore.Append) error {
				_, err := store.AppendCommit(b.Context(), func(batch *pgx.Batch, events []eventstore.Event) error {
					batch.Queue(`INSERT INTO append_commit_bench (stream_id, version) VALUES ($1, $2)
ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version`, a.StreamID, events[0].Version)
					return nil
				}, a)
				return err
			})
		})
	}
}

// benchAppends runs b.N appends of one event from 16 writers, each on a
// stream of its own.
func benchAppends(b *testing.B, appendOne func(eventstore.Append) error) {
	meta := eventstore.Metadata{MSPID: "msp-0042", UserID: "user-0815", CorrelationID: uuid.NewString(), CausationID: uuid.NewString()}
	const writers = 16
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			stream := fmt.Sprintf("bench-%d-%s", w, uuid.NewString())
			for version := int64(0); left.Add(-1) >= 0; version++ {
				err := appendOne(eventstore.Append{StreamID: stream, StreamType: "bench", ExpectedVersion: version,
					Events: []eventstore.NewEvent{{Type: "SeatsChanged", Data: json.RawMessage(benchData), Metadata: meta}}})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
}
