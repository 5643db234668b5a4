package eventstore

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Metadata says who caused an event and within which flow, so auditors and
// downstream consumers can trace it without reading its data.
type Metadata struct {
	MSPID         string `json:"msp_id,omitempty"`
	UserID        string `json:"user_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
}

// NewEvent is an event to append.
type NewEvent struct {
	// ID is uuid.Nil to have one generated (a UUIDv7, so ids sort roughly by
	// creation time); callers set it when they need to know the id before
	// appending, e.g. to make a retried command idempotent.
	ID            uuid.UUID
	Type          string
	SchemaVersion int             // 0 means 1
	Data          json.RawMessage // a JSON object
	Metadata      Metadata
}

// Event is a recorded event.
type Event struct {
	ID            uuid.UUID
	StreamID      string
	StreamType    string
	Version       int64 // 1 for the first event of the stream
	Position      int64 // insertion order; see the package comment for why it is not commit order
	TransactionID uint64
	Type          string
	SchemaVersion int
	// Data is the JSON appended. Append returns it as given; reads return
	// it as jsonb stores it (keys sorted, whitespace normalised).
	Data     json.RawMessage
	Metadata Metadata
	// RawMetadata is Metadata as JSON: reads return the stored jsonb text,
	// which the hash covers; Append returns what it stored, before jsonb
	// normalised it.
	RawMetadata json.RawMessage
	RecordedAt  time.Time // the start of the appending transaction
	// Hash is the SHA-256 that chains the event to the previous one of its
	// stream (see EventHash): edit, delete or reorder an event and the
	// chain no longer verifies from there on (VerifyChain).
	Hash []byte
}

// Expected versions with a special meaning. Any other expected version is
// the version of the stream's last event.
const (
	NoStream   int64 = 0  // the stream must not exist yet
	AnyVersion int64 = -1 // append after whatever the stream holds
)

// Append is the events for one stream, with the version the caller expects
// the stream to be at.
type Append struct {
	StreamID        string
	StreamType      string
	ExpectedVersion int64
	Events          []NewEvent
}
