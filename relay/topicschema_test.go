package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/internal/testdb"
)

var trickyMetadata = message.Metadata{
	"ce_type":      "SeatsChanged",
	"quote":        `say "hi" \ back\slash`,
	"control":      "tab\tnew\nline\rcr\x00nul\x1f",
	"html":         "<a href='x'>&amp;</a>",
	"unicode":      "Émile – 東京 \u2028 \u2029 🙂",
	"":             "empty key",
	"empty value":  "",
	"upsell_hash":  "5b1c2d3e4f5061728394a5b6c7d8e9fa",
	"ce_subject":   "2b8e4f6a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
	"z last, a ok": "sorted?",
}

// The metadata object is what encoding/json makes of the map, byte for
// byte, whatever the keys and values hold (quotes, controls, HTML
// characters, U+2028, invalid UTF-8).
func TestAppendMetadata(t *testing.T) {
	for _, md := range []message.Metadata{
		trickyMetadata,
		{"b": "2", "a": "1", "ce_id": uuid.NewString(), "upsell_stream_version": "12"},
		{"k": "a\xffb", "\xfe": "x"},
		{},
	} {
		want, err := json.Marshal(md)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendMetadata(nil, md); string(got) != string(want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

// Published through topicSchema, a batch is the rows watermill-sql's own
// schema would write: in order, one transaction, the payload and metadata
// as given. (The relay's tests read them with watermill-sql's subscriber.)
func TestTopicSchemaWritesTheBatchInOrder(t *testing.T) {
	pool := testdb.Pool(t, "relaytopic")
	ctx := context.Background()
	pub, closeDB, err := Transport{Kind: "postgres", Topic: Topic}.Publisher(ctx, pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB()
	defer pub.Close()
	var sent []*message.Message
	for _, n := range []int{1, 3, 500} {
		batch := make([]*message.Message, n)
		for i := range batch {
			md := message.Metadata{}
			for k, v := range trickyMetadata {
				md[k] = v
			}
			md["n"] = fmt.Sprint(i)
			batch[i] = message.NewMessage(uuid.NewString(), []byte(fmt.Sprintf(`{"i": %d, "s": "x\"y"}`, i)))
			batch[i].Metadata = md
		}
		if err := pub.Publish(Topic, batch...); err != nil {
			t.Fatalf("publish %d: %v", n, err)
		}
		sent = append(sent, batch...)
	}
	rows, err := pool.Query(ctx, `SELECT uuid, payload::text, metadata::text, transaction_id::text FROM watermill_upsell_events ORDER BY "offset"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	xids := map[string]int{}
	for rows.Next() {
		var id, payload, metadata, xid string
		if err := rows.Scan(&id, &payload, &metadata, &xid); err != nil {
			t.Fatal(err)
		}
		if i >= len(sent) {
			t.Fatalf("more rows than the %d messages sent", len(sent))
		}
		m := sent[i]
		var md map[string]string
		if err := json.Unmarshal([]byte(metadata), &md); err != nil || !reflect.DeepEqual(message.Metadata(md), m.Metadata) {
			t.Errorf("row %d: metadata %s (%v), want %v", i, metadata, err, m.Metadata)
		}
		if id != m.UUID || payload != string(m.Payload) {
			t.Errorf("row %d: %s %s, want %s %s", i, id, payload, m.UUID, m.Payload)
		}
		xids[xid]++
		i++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(sent) || len(xids) != 3 {
		t.Errorf("%d rows in %d transactions, want %d in 3", i, len(xids), len(sent))
	}
}
