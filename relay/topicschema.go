package relay

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// topicSchema is watermill-sql's PostgreSQL schema with a faster insert.
// The default one writes a batch of n messages as a statement of n VALUES
// rows: every batch size is another statement text, which PostgreSQL
// parses and plans anew (the relay's batches vary from 1 to 500), and it
// encodes each message's metadata with encoding/json's map encoding. This
// one sends every batch as the same statement, the messages as three
// arrays unnested in order, and writes the metadata object directly. The
// rows, and so what subscribers read, are the same: the same columns, the
// offsets in the order of the batch, one transaction id.
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
		var err error
		if buf, err = appendMetadata(buf[:0], msg.Metadata); err != nil {
			return wsql.Query{}, fmt.Errorf("could not marshal metadata into JSON for message %s: %w", msg.UUID, err)
		}
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

// appendMetadata appends the metadata as a JSON object, its keys sorted as
// encoding/json sorts a map's. A value that is not valid UTF-8 goes the
// slow way, through encoding/json, which replaces what it cannot encode.
func appendMetadata(b []byte, md message.Metadata) ([]byte, error) {
	keys := make([]string, 0, len(md))
	for k, v := range md {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return json.Marshal(md)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, md[k])
	}
	return append(b, '}'), nil
}

// appendString appends s, valid UTF-8, as a JSON string.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for {
		i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == '"' || r == '\\' })
		if i < 0 {
			break
		}
		b = append(b, s[:i]...)
		switch c := s[i]; c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		s = s[i+1:]
	}
	b = append(b, s...)
	return append(b, '"')
}
