package relay

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/schemas"
)

// Metadata keys of every message the relay publishes. The ce_ keys are the
// CloudEvents attribute names (binary content mode: the payload is the
// event's data, the attributes travel as metadata); the upsell_ keys carry
// the rest of the event's envelope.
const (
	MetaSpecVersion    = "ce_specversion"     // "1.0"
	MetaID             = "ce_id"              // the event id, also the message UUID
	MetaType           = "ce_type"            // the event type, e.g. OrderSubmitted
	MetaSource         = "ce_source"          // "urn:upsell:" + stream type
	MetaSubject        = "ce_subject"         // the stream id
	MetaTime           = "ce_time"            // recorded_at, RFC 3339 with microseconds, UTC
	MetaContentType    = "ce_datacontenttype" // "application/json"
	MetaDataSchema     = "ce_dataschema"      // the schema's id, urn:upsell:schema:TYPE:vN
	MetaStreamType     = "upsell_stream_type"
	MetaStreamVersion  = "upsell_stream_version"
	MetaPosition       = "upsell_position"
	MetaTransactionID  = "upsell_transaction_id"
	MetaSchemaVersion  = "upsell_schema_version"
	MetaCorrelationID  = "upsell_correlation_id"
	MetaCausationID    = "upsell_causation_id"
	MetaActorMSPID     = "upsell_actor_msp_id"
	MetaActorUserID    = "upsell_actor_user_id"
	MetaHash           = "upsell_hash" // the event's chain hash, hex: an anchor outside the database
	CloudEventsVersion = "1.0"
	SourcePrefix       = "urn:upsell:"
	payloadContentType = "application/json"
	ceTimeLayout       = "2006-01-02T15:04:05.000000Z07:00"
)

// NewMessage is the message that carries e: its UUID is the event id, so a
// consumer that de-duplicates on the UUID sees each event once however
// often the relay publishes it. The payload is the event's data upcast to
// the current schema version, so consumers see one shape per type. An
// event this code does not know (a newer binary wrote it) goes out as
// stored, its version in the metadata; data an upcaster cannot read is an
// error, which stops the relay at that event rather than skip it.
func NewMessage(e eventstore.Event) (*message.Message, error) {
	version, data, err := domain.Upcast(e.Type, e.SchemaVersion, e.Data)
	var unsupported *domain.UnsupportedSchemaError
	switch {
	case errors.As(err, &unsupported):
		version, data = e.SchemaVersion, e.Data
	case err != nil:
		return nil, fmt.Errorf("event %s (%s v%d, stream %s version %d): %w", e.ID, e.Type, e.SchemaVersion, e.StreamID, e.Version, err)
	}
	e.SchemaVersion = version
	m := message.NewMessage(e.ID.String(), message.Payload(data))
	md := m.Metadata
	md[MetaSpecVersion] = CloudEventsVersion
	md[MetaID] = e.ID.String()
	md[MetaType] = e.Type
	md[MetaSource] = SourcePrefix + e.StreamType
	md[MetaSubject] = e.StreamID
	md[MetaTime] = e.RecordedAt.UTC().Format(ceTimeLayout)
	md[MetaContentType] = payloadContentType
	md[MetaDataSchema] = schemas.ID(e.Type, e.SchemaVersion)
	md[MetaStreamType] = e.StreamType
	md[MetaStreamVersion] = strconv.FormatInt(e.Version, 10)
	md[MetaPosition] = strconv.FormatInt(e.Position, 10)
	md[MetaTransactionID] = strconv.FormatUint(e.TransactionID, 10)
	md[MetaSchemaVersion] = strconv.Itoa(e.SchemaVersion)
	setIf(md, MetaCorrelationID, e.Metadata.CorrelationID)
	setIf(md, MetaCausationID, e.Metadata.CausationID)
	setIf(md, MetaActorMSPID, e.Metadata.MSPID)
	setIf(md, MetaActorUserID, e.Metadata.UserID)
	if len(e.Hash) > 0 {
		md[MetaHash] = hex.EncodeToString(e.Hash)
	}
	return m, nil
}

func setIf(md message.Metadata, key, value string) {
	if value != "" {
		md[key] = value
	}
}

// Envelope is what a consumer reads back from a message's metadata.
type Envelope struct {
	EventID       string
	Type          string
	StreamID      string
	StreamType    string
	StreamVersion int64
	Position      int64
	SchemaVersion int
	Time          time.Time
}

// ParseEnvelope reads the envelope of a message the relay published; a
// message without it is an error naming the missing key.
func ParseEnvelope(m *message.Message) (Envelope, error) {
	md := m.Metadata
	env := Envelope{EventID: md.Get(MetaID), Type: md.Get(MetaType), StreamID: md.Get(MetaSubject), StreamType: md.Get(MetaStreamType)}
	for key, v := range map[string]string{MetaID: env.EventID, MetaType: env.Type, MetaSubject: env.StreamID, MetaStreamType: env.StreamType} {
		if v == "" {
			return env, fmt.Errorf("message %s: no %s in its metadata: not an upsell event", m.UUID, key)
		}
	}
	var err error
	if env.StreamVersion, err = strconv.ParseInt(md.Get(MetaStreamVersion), 10, 64); err != nil {
		return env, fmt.Errorf("message %s: %s: %w", m.UUID, MetaStreamVersion, err)
	}
	if env.Position, err = strconv.ParseInt(md.Get(MetaPosition), 10, 64); err != nil {
		return env, fmt.Errorf("message %s: %s: %w", m.UUID, MetaPosition, err)
	}
	if env.SchemaVersion, err = strconv.Atoi(md.Get(MetaSchemaVersion)); err != nil {
		return env, fmt.Errorf("message %s: %s: %w", m.UUID, MetaSchemaVersion, err)
	}
	if env.Time, err = time.Parse(time.RFC3339Nano, md.Get(MetaTime)); err != nil {
		return env, fmt.Errorf("message %s: %s: %w", m.UUID, MetaTime, err)
	}
	return env, nil
}
