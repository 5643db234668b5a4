package relay

import (
	"slices"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/upsell-dev/upsell/internal/jsontext"
)

// topicSchema is watermill-sql's PostgreSQL schema with a faster insert.
// The default one writes a batch of n messages as a statement of n VALUES
// rows: every batch size is another statement text, which PostgreSQL
// parses and plans anew (the relay's batches vary from 1 to 500), and it
// encodes each message's metadata with encoding/json's map encoding. This
// one sends every batch as the same statement, the messages as three
// arrays unnested in order, and writes the metadata object directly (the
// same bytes). The rows, and so what subscribers read, are the same: the
// same columns, the offsets in the order of the batch, one transaction id.
type topicSchema struct {
	wsql.DefaultPostgreSQLSchema
}

func (s topicSchema) InsertQuery(topic string, msgs message.Messages) (wsql.Query, error) {
	ids := make([]string, len(msgs))
	payloads := make([]string, len(msgs))
	metadata := make([]string, len(msgs))
	var buf []byte
	for i, msg := range msgs {
		ids[i] = msg.UUID
		payloads[i] = string(msg.Payload)
		buf = appendMetadata(buf[:0], msg.Metadata)
		metadata[i] = string(buf)
	}
	return wsql.Query{
		Query: `INSERT INTO ` + s.MessagesTable(topic) + ` (uuid, payload, metadata, transaction_id)
SELECT m.uuid, m.payload, m.metadata, pg_current_xact_id()
FROM unnest($1::varchar(36)[], $2::json[], $3::json[]) WITH ORDINALITY AS m(uuid, payload, metadata, n)
ORDER BY m.n`,
		Args: []any{ids, payloads, metadata},
	}, nil
}

// appendMetadata appends the metadata as encoding/json writes a map: the
// keys sorted, each string written as encoding/json writes it.
func appendMetadata(b []byte, md message.Metadata) []byte {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsontext.AppendString(b, k)
		b = append(b, ':')
		b = jsontext.AppendString(b, md[k])
	}
	return append(b, '}')
}
