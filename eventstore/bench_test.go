package eventstore_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

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
	ctx := b.Context()
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
				_, err := store.Append(ctx, eventstore.Append{StreamID: stream, StreamType: "bench", ExpectedVersion: version,
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
