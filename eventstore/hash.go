package eventstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// HashFormat names the canonical encoding an event's hash is computed over.
// A future encoding gets another tag; the tag is the first field hashed, so
// no two encodings can give the same input.
const HashFormat = "upsell.event.v1"

// HashSize is the length of an event's hash: SHA-256.
const HashSize = sha256.Size

// genesis is what the first event of every stream chains to.
var genesis = make([]byte, HashSize)

// EventHash returns the hash of e chained to prev, the hash of the event
// before it in its stream; nil prev means e is the stream's first event,
// which chains to 32 zero bytes.
//
// The hash is SHA-256 over UTF-8 text made of eleven netstrings, each the
// field's length in bytes (decimal), ':', the field and ',': the tag
// HashFormat; prev in lowercase hex; the event id (lowercase, with hyphens);
// stream id; stream type; version (decimal); event type; schema version
// (decimal); recorded-at as microseconds since the Unix epoch (decimal);
// data and metadata as the database prints their jsonb. docs/audit.md
// states it for auditors.
//
// This is a separate implementation of the function the database computes
// on append (upsell_event_hash, migration 005), so that verification does
// not trust the database. It covers Data and RawMetadata as they are
// stored, so verify events as Load and ReadLog return them: Append returns
// the JSON it was given, before jsonb normalised it.
func EventHash(prev []byte, e Event) []byte {
	if prev == nil {
		prev = genesis
	}
	b := make([]byte, 0, 256+len(e.Data)+len(e.RawMetadata))
	var num [20]byte
	b = netstring(b, HashFormat)
	b = netstring(b, hex.AppendEncode(nil, prev))
	b = netstring(b, e.ID.String())
	b = netstring(b, e.StreamID)
	b = netstring(b, e.StreamType)
	b = netstring(b, strconv.AppendInt(num[:0], e.Version, 10))
	b = netstring(b, e.Type)
	b = netstring(b, strconv.AppendInt(num[:0], int64(e.SchemaVersion), 10))
	b = netstring(b, strconv.AppendInt(num[:0], e.RecordedAt.UnixMicro(), 10))
	b = netstring(b, e.Data)
	b = netstring(b, e.RawMetadata)
	sum := sha256.Sum256(b)
	return sum[:]
}

// netstring appends s as a netstring: its length in bytes, ':', s, ','.
func netstring[S ~string | ~[]byte](b []byte, s S) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	b = append(b, s...)
	return append(b, ',')
}

// ErrChainBroken is matched (errors.Is) by every *ChainError.
var ErrChainBroken = errors.New("hash chain broken")

// ChainReason says how a stream's hash chain is broken.
type ChainReason string

const (
	// ReasonHashMismatch: the event's hash is not that of its content
	// chained to the previous event's hash. The event was edited (any
	// column: data, metadata, time, type, ids), or the previous event was
	// edited and its hash recomputed to match.
	ReasonHashMismatch ChainReason = "hash mismatch"
	// ReasonVersionGap: versions are missing before this event: events
	// were deleted (or moved to another stream).
	ReasonVersionGap ChainReason = "version gap"
	// ReasonOutOfOrder: the version is not above the previous event's: a
	// duplicate version, or events not in version order.
	ReasonOutOfOrder ChainReason = "version out of order"
	// ReasonNotChained: the event's content matches its hash, but the hash
	// chains to another event than the one before it: events were
	// reordered (versions swapped or renumbered).
	ReasonNotChained ChainReason = "hash does not chain to the previous event"
)

// ChainError names the first event at which a stream's hash chain breaks.
type ChainError struct {
	StreamID string      `json:"stream_id"`
	Version  int64       `json:"version"`
	EventID  uuid.UUID   `json:"event_id"`
	Reason   ChainReason `json:"reason"`
	Detail   string      `json:"detail"` // what was found, in words
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("hash chain broken in stream %s at version %d (event %s): %s: %s",
		e.StreamID, e.Version, e.EventID, e.Reason, e.Detail)
}

// Is makes errors.Is(err, ErrChainBroken) hold.
func (e *ChainError) Is(target error) bool { return target == ErrChainBroken }

// ChainStats counts what a verification checked.
type ChainStats struct {
	Events  int64
	Streams int64
}

// ChainVerifier checks events one at a time, given in (stream id, version)
// order, keeping only the previous event's version and hash: memory stays
// flat however long the log. Each stream's events must come together.
type ChainVerifier struct {
	stats       ChainStats
	stream      string
	started     bool
	prevVersion int64
	prevHash    []byte
}

// Stats returns what was checked so far.
func (v *ChainVerifier) Stats() ChainStats { return v.stats }

// Add checks the next event. It returns a *ChainError for the first event
// at which the chain breaks; its diagnosis is coarse (a reordering is
// reported as a mismatch), VerifyChain on the event's stream refines it.
func (v *ChainVerifier) Add(e Event) error {
	if !v.started || e.StreamID != v.stream {
		v.started, v.stream = true, e.StreamID
		v.prevVersion, v.prevHash = 0, nil
		v.stats.Streams++
	}
	bad := func(reason ChainReason, format string, args ...any) error {
		return &ChainError{StreamID: e.StreamID, Version: e.Version, EventID: e.ID, Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
	switch want := v.prevVersion + 1; {
	case e.Version < want && e.Version == v.prevVersion:
		return bad(ReasonOutOfOrder, "version %d appears twice", e.Version)
	case e.Version < want:
		return bad(ReasonOutOfOrder, "version %d comes after version %d", e.Version, v.prevVersion)
	case e.Version == want+1:
		return bad(ReasonVersionGap, "version %d is missing: an event was deleted or moved to another stream", want)
	case e.Version > want:
		return bad(ReasonVersionGap, "versions %d to %d are missing: events were deleted or moved to another stream", want, e.Version-1)
	}
	if len(e.Hash) != HashSize {
		return bad(ReasonHashMismatch, "the stored hash has %d bytes, not %d", len(e.Hash), HashSize)
	}
	if !bytes.Equal(EventHash(v.prevHash, e), e.Hash) {
		return bad(ReasonHashMismatch, "%s", mismatchDetail(e.Version))
	}
	v.prevVersion, v.prevHash = e.Version, e.Hash
	v.stats.Events++
	return nil
}

func mismatchDetail(version int64) string {
	if version == 1 {
		return "the stored hash is not that of the event's content: the event was edited"
	}
	return "the stored hash is not that of the event's content chained to the previous event's hash: " +
		"the event was edited, or the previous one was edited and its hash recomputed"
}

// VerifyChain recomputes the hash chain of events read in (stream id,
// version) order, one stream or several (as Load or a scan of the log
// ordered so returns them), and returns what it checked and a *ChainError
// naming the first event where a chain breaks, nil when every chain holds.
//
// A chain cannot show that events were deleted from the end of a stream:
// what remains is a valid, shorter chain. Compare the newest event's hash
// with one kept outside the database (the relay publishes every hash).
func VerifyChain(events []Event) (ChainStats, error) {
	var v ChainVerifier
	for i, e := range events {
		if err := v.Add(e); err != nil {
			stream, j := streamAround(events, i)
			return v.Stats(), refine(err, stream, j)
		}
	}
	return v.Stats(), nil
}

// streamAround returns the events of events[i]'s stream next to it, and
// the index of events[i] among them.
func streamAround(events []Event, i int) ([]Event, int) {
	first, last := i, i
	for first > 0 && events[first-1].StreamID == events[i].StreamID {
		first--
	}
	for last+1 < len(events) && events[last+1].StreamID == events[i].StreamID {
		last++
	}
	return events[first : last+1], i - first
}

// maxSearch bounds the search for a reordered event, which hashes the
// event at every version of its stream after every other event: n² hashes.
const maxSearch = 256

// refine tells a reordered event from an edited one: an event whose content
// still matches its hash at some version after some other event of its
// stream was moved, not edited.
func refine(err error, stream []Event, i int) error {
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Reason != ReasonHashMismatch || len(stream[i].Hash) != HashSize || len(stream) > maxSearch {
		return err
	}
	e := stream[i]
	type candidate struct {
		hash  []byte
		after string // the predecessor, in words
	}
	candidates := []candidate{{nil, "as the first event of its stream"}}
	for j, o := range stream {
		if j != i {
			candidates = append(candidates, candidate{o.Hash, fmt.Sprintf("after the event now at version %d (%s)", o.Version, o.ID)})
		}
	}
	// The versions it may have had: its own first, then any up to a little
	// beyond the stream's last.
	last := e.Version
	for _, o := range stream {
		last = max(last, o.Version)
	}
	if last > maxSearch+int64(len(stream)) {
		return err
	}
	versions := []int64{e.Version}
	for v := int64(1); v <= last+16; v++ {
		if v != e.Version {
			versions = append(versions, v)
		}
	}
	for _, version := range versions {
		moved := e
		moved.Version = version
		for _, c := range candidates {
			if !bytes.Equal(EventHash(c.hash, moved), e.Hash) {
				continue
			}
			ce.Reason = ReasonNotChained
			if version == e.Version {
				ce.Detail = fmt.Sprintf("the event is intact but was chained %s, not after the event before it: events were reordered", c.after)
			} else {
				ce.Detail = fmt.Sprintf("the event is intact but was recorded as version %d, %s: events were reordered", version, c.after)
			}
			return ce
		}
	}
	// Its predecessor is gone, but the next event may still chain to it at
	// another version than it has now: the versions were renumbered.
	if i+1 < len(stream) {
		next := stream[i+1]
		for _, version := range versions {
			moved := next
			moved.Version = version + 1
			if version != e.Version && bytes.Equal(EventHash(e.Hash, moved), next.Hash) {
				ce.Reason = ReasonNotChained
				ce.Detail = fmt.Sprintf("the event was recorded as version %d (the next one chains to it as such), "+
					"so the events were renumbered after an event before it was deleted or moved", version)
				return ce
			}
		}
	}
	return err
}

// VerifyStream reads one stream and verifies its chain (VerifyChain). An
// unknown stream checks nothing and is no error: the caller tells.
func VerifyStream(ctx context.Context, db DBTX, streamID string) (ChainStats, error) {
	events, err := loadStored(ctx, db, streamID)
	if err != nil {
		return ChainStats{}, err
	}
	return VerifyChain(events)
}

// loadStored reads a stream's rows in version order as stored (their
// metadata not decoded: Metadata stays empty, RawMetadata has it).
func loadStored(ctx context.Context, db DBTX, streamID string) ([]Event, error) {
	rows, err := db.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE stream_id = $1 ORDER BY version`, streamID)
	if err != nil {
		return nil, fmt.Errorf("eventstore: verify stream %q: %w", streamID, err)
	}
	events, err := pgx.CollectRows(rows, scanStored)
	if err != nil {
		return nil, fmt.Errorf("eventstore: verify stream %q: %w", streamID, err)
	}
	return events, nil
}

// progressEvery is how many events VerifyAll checks between two calls of
// its progress function.
const progressEvery = 1000

// VerifyAll verifies the chain of every stream, reading the whole log in
// one query ordered by (stream id, version) as it checks it, so memory stays
// flat however many events there are. progress, when not nil, is called
// every thousand events with what was checked so far. It stops at the first
// broken chain, which it reports as VerifyChain does. It cancels its query
// when it stops early, which closes the connection it ran on: give it a
// pool, not a connection or transaction that must go on.
func VerifyAll(ctx context.Context, db DBTX, progress func(ChainStats)) (ChainStats, error) {
	scanCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	rows, err := db.Query(scanCtx, `SELECT `+eventColumns+` FROM events ORDER BY stream_id, version`)
	if err != nil {
		return ChainStats{}, fmt.Errorf("eventstore: verify: %w", err)
	}
	var v ChainVerifier
	var broken error
	for rows.Next() {
		e, err := scanStored(rows)
		if err != nil {
			rows.Close()
			return v.Stats(), fmt.Errorf("eventstore: verify: %w", err)
		}
		if err := v.Add(e); err != nil {
			broken = err
			break
		}
		if progress != nil && v.stats.Events%progressEvery == 0 {
			progress(v.Stats())
		}
	}
	if broken != nil {
		// Closing would read the rest of the log first: cancel the query.
		cancel()
		rows.Close()
		var ce *ChainError
		if errors.As(broken, &ce) && ce.Reason == ReasonHashMismatch {
			// Its stream is read again, whole, to tell a reordering.
			if events, err := loadStored(ctx, db, ce.StreamID); err == nil {
				if _, again := VerifyChain(events); sameEvent(again, ce) {
					broken = again
				}
			}
		}
		return v.Stats(), broken
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return v.Stats(), fmt.Errorf("eventstore: verify: %w", err)
	}
	return v.Stats(), nil
}

// sameEvent reports whether err is a *ChainError at the same event as ce.
func sameEvent(err error, ce *ChainError) bool {
	var other *ChainError
	return errors.As(err, &other) && other.StreamID == ce.StreamID && other.Version == ce.Version && other.EventID == ce.EventID
}
