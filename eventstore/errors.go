package eventstore

import (
	"errors"
	"fmt"
)

var (
	// ErrVersionConflict is matched (errors.Is) by every *VersionConflictError.
	ErrVersionConflict = errors.New("version conflict")
	// ErrDuplicateEvent means an event with one of the given ids is already
	// recorded: typically a retried append that had in fact succeeded.
	ErrDuplicateEvent = errors.New("duplicate event id")
	// ErrInvalidAppend means the append was refused before reaching the
	// database; the wrapping error says why.
	ErrInvalidAppend = errors.New("invalid append")
)

// VersionConflictError means a stream was not at the version an append
// expected: the caller decided on stale state, or lost a race with another
// writer. Reload the stream and decide again.
type VersionConflictError struct {
	StreamID string
	Expected int64
	Actual   int64 // the version read once the append failed, -1 when unknown (a concurrent writer won)
	Err      error // the database error when a concurrent writer won, else nil
}

// errWroteBeforeHead is the cause of a conflict where the stream was at the
// expected version but the transaction had its id before the stream's last
// event was written (see appendSQL).
var errWroteBeforeHead = errors.New("the transaction wrote before the stream's last event was appended; retry it in a new transaction")

func (e *VersionConflictError) Error() string {
	if errors.Is(e.Err, errWroteBeforeHead) {
		return fmt.Sprintf("eventstore: version conflict on stream %q at version %d: %v", e.StreamID, e.Actual, e.Err)
	}
	if e.Actual < 0 {
		if e.Expected == AnyVersion {
			return fmt.Sprintf("eventstore: version conflict on stream %q: another writer appended the same version first", e.StreamID)
		}
		return fmt.Sprintf("eventstore: version conflict on stream %q: not at expected version %d", e.StreamID, e.Expected)
	}
	return fmt.Sprintf("eventstore: version conflict on stream %q: expected version %d, stream is at %d", e.StreamID, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrVersionConflict) hold without Unwrap, which is
// kept for the database cause.
func (e *VersionConflictError) Is(target error) bool { return target == ErrVersionConflict }

func (e *VersionConflictError) Unwrap() error { return e.Err }
