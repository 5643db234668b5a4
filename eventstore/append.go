package eventstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// appendSQL checks the expected version and inserts in one statement, so a
// single-stream append is one round trip in an implicit transaction. head is
// read under READ COMMITTED, so two writers can both pass the check; the
// unique key on (stream_id, version) then refuses the second.
//
// The log is read in transaction id order, and a transaction gets its id at
// its first write. A transaction that wrote something else before another
// transaction appended to this stream and committed holds a smaller id than
// that head event, so its event would come before the head in the log. The
// insert therefore also requires this transaction's id to be above the
// head's: per stream, log order is version order. A transaction refused that
// way sees a version conflict, and a retry in a new transaction succeeds.
//
// A refused append raises an error (upsell_refuse_append, migration 010,
// SQLSTATE UP409 with the stream's version as its detail) instead of
// inserting nothing, so that nothing sent after it in the same pipeline can
// commit without its events (see AppendCommit).
//
// Each event's hash chains to the previous one's (see hash.go): the head's
// hash is read with its version, and upsell_event_hash (migration 005),
// which the planner inlines, hashes the event. recorded_at is set to now(),
// the column's default, so that the hash covers exactly the value stored.
// Two writers that read the same head both chain to it; the unique key
// refuses the second. appendSQL takes one event, the usual case, as plain
// parameters; appendManySQL chains several, given as arrays.
const appendSQL = `INSERT INTO events
    (event_id, stream_id, stream_type, version, event_type, schema_version, data, metadata, recorded_at, hash)
SELECT $4::uuid, $1, $2, head.version + 1, $5::text, $6::integer, $7::jsonb, $8::jsonb, now(),
       upsell_event_hash(head.hash, $4::uuid, $1, $2, head.version + 1, $5::text, $6::integer, now(), $7::jsonb, $8::jsonb)
FROM (SELECT coalesce(h.version, 0) AS version, h.transaction_id AS xid, h.hash
      FROM (VALUES (1)) AS one
      LEFT JOIN LATERAL (SELECT version, transaction_id, hash FROM events
                         WHERE stream_id = $1::text ORDER BY version DESC LIMIT 1) AS h ON true) AS head
WHERE CASE WHEN (head.version = $3::bigint OR $3::bigint = -1)
            AND (head.xid IS NULL OR head.xid < pg_current_xact_id()) THEN true
          ELSE upsell_refuse_append($1, $3::bigint, head.version) END
RETURNING position, transaction_id, version, recorded_at, hash`

// appendManySQL is appendSQL for several events: chain starts from the head
// (row 0: its version and hash, when the checks pass) and hashes the events
// one after the other. The hash expression appears once, in the recursive
// term. Computing it is most of what the chain adds to an append's cost,
// which is why one event takes appendSQL: no recursion, no array subscripts.
const appendManySQL = `WITH RECURSIVE chain AS (
    SELECT 0 AS n, coalesce(h.version, 0) AS version, h.hash
    FROM (VALUES (1)) AS one
    LEFT JOIN LATERAL (SELECT version, transaction_id, hash FROM events
                       WHERE stream_id = $1::text ORDER BY version DESC LIMIT 1) AS h ON true
    WHERE CASE WHEN (coalesce(h.version, 0) = $3::bigint OR $3::bigint = -1)
                AND (h.transaction_id IS NULL OR h.transaction_id < pg_current_xact_id()) THEN true
              ELSE upsell_refuse_append($1, $3::bigint, coalesce(h.version, 0)) END
  UNION ALL
    SELECT c.n + 1, c.version + 1,
           upsell_event_hash(c.hash, ($4::uuid[])[c.n + 1], $1, $2, c.version + 1, ($5::text[])[c.n + 1],
                             ($6::integer[])[c.n + 1], now(), ($7::jsonb[])[c.n + 1], ($8::jsonb[])[c.n + 1])
    FROM chain AS c
    WHERE c.n < cardinality($4::uuid[])
)
INSERT INTO events
    (event_id, stream_id, stream_type, version, event_type, schema_version, data, metadata, recorded_at, hash)
SELECT ($4::uuid[])[n], $1, $2, version, ($5::text[])[n], ($6::integer[])[n], ($7::jsonb[])[n], ($8::jsonb[])[n], now(), hash
FROM chain
WHERE n > 0
RETURNING position, transaction_id, version, recorded_at, hash`

// groupAppendSQL is appendSQL for one event on each of several streams, as
// arrays in the same order of parameters, one element per stream: a group
// commit's members that append one event each (most commands) share it, so
// that PostgreSQL starts, opens the indexes of and ends one insert for the
// group instead of one per member. Each row checks and chains to its own
// stream's head as appendSQL does; the first refused stream raises
// upsell_refuse_append and nothing of the statement is inserted. A stream
// must appear once. RETURNING names the stream of each row.
const groupAppendSQL = `INSERT INTO events
    (event_id, stream_id, stream_type, version, event_type, schema_version, data, metadata, recorded_at, hash)
SELECT a.event_id, a.stream_id, a.stream_type, head.version + 1, a.event_type, a.schema_version, a.data, a.metadata, now(),
       upsell_event_hash(head.hash, a.event_id, a.stream_id, a.stream_type, head.version + 1, a.event_type,
                         a.schema_version, now(), a.data, a.metadata)
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::integer[], $7::jsonb[], $8::jsonb[])
         WITH ORDINALITY AS a(stream_id, stream_type, expected, event_id, event_type, schema_version, data, metadata, n)
CROSS JOIN LATERAL (SELECT coalesce(h.version, 0) AS version, h.transaction_id AS xid, h.hash
                    FROM (VALUES (1)) AS one
                    LEFT JOIN LATERAL (SELECT version, transaction_id, hash FROM events
                                       WHERE stream_id = a.stream_id ORDER BY version DESC LIMIT 1) AS h ON true) AS head
WHERE CASE WHEN (head.version = a.expected OR a.expected = -1)
            AND (head.xid IS NULL OR head.xid < pg_current_xact_id()) THEN true
          ELSE upsell_refuse_append(a.stream_id, a.expected, head.version) END
ORDER BY a.n
RETURNING stream_id, position, transaction_id, version, recorded_at, hash`

// The unique violation and the constraints of migrations/001_events.up.sql
// that an append can meet.
const (
	uniqueViolation  = "23505"
	streamVersionKey = "events_stream_version_key"
	eventIDKey       = "events_event_id_key"
	// appendRefused is upsell_refuse_append's SQLSTATE (migration 010).
	appendRefused = "UP409"
)

// Append appends to one or several streams atomically: every event is
// recorded, or none. It returns the recorded events in the order given.
//
// It returns an error matching ErrInvalidAppend for a malformed append
// (nothing reaches the database), a *VersionConflictError when a stream is
// not at its expected version, and one matching ErrDuplicateEvent when an
// event id is already recorded.
func (s *Store) Append(ctx context.Context, appends ...Append) ([]Event, error) {
	streams, err := prepare(appends)
	if err != nil {
		return nil, err
	}
	if len(streams) == 1 {
		return appendOne(ctx, s.pool, streams[0])
	}
	tx, events, err := s.begin(ctx, streams)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("eventstore: commit append: %w", err)
	}
	return events, nil
}

// BeginAppend is AppendTx in a transaction of its own that it begins and
// leaves open: the caller writes what must commit with the events (inline
// read models, an idempotency key) in tx, then commits or rolls back. BEGIN
// travels with the inserts, in one round trip. On an error the transaction
// is already rolled back.
func (s *Store) BeginAppend(ctx context.Context, appends ...Append) (pgx.Tx, []Event, error) {
	streams, err := prepare(appends)
	if err != nil {
		return nil, nil, err
	}
	return s.begin(ctx, streams)
}

// AppendCommit appends and commits in one round trip: BEGIN, the inserts,
// the statements that with queues on the batch, and COMMIT travel as one
// pipeline. with writes what must commit with the events (inline read
// models, an idempotent response). It gets the events as they will be
// recorded: ids, streams, versions, types, data and metadata, but no
// position, transaction id, hash or recorded time, which only the insert
// makes (the recorded time is the transaction's now(), which with's
// statements can use). It must not read: nothing has run yet.
//
// Every stream needs a definite ExpectedVersion (not AnyVersion), so that
// the versions are known before the insert. A refused append (a version
// conflict, see appendSQL) and any error of with's statements are errors
// PostgreSQL raises, after which it skips the rest of the pipeline, COMMIT
// included: the transaction is rolled back, in a second round trip, and
// nothing of it is recorded. Errors of with's statements come back as
// PostgreSQL gave them (*pgconn.PgError), wrapped; callbacks set on with's
// queued statements (QueuedQuery.Exec and the like) run only when their
// statement succeeded, and an error they return is returned, but cannot
// stop the commit: a statement that must stop it has to fail in PostgreSQL.
//
// On a store made WithGroupCommit, calls made at once may share one
// transaction (see group.go); each still gets its own events and errors,
// as it would alone. A call whose statements have callbacks always goes
// alone.
func (s *Store) AppendCommit(ctx context.Context, with func(b *pgx.Batch, events []Event) error, appends ...Append) ([]Event, error) {
	streams, err := prepare(appends)
	if err != nil {
		return nil, err
	}
	var pending []Event
	for _, p := range streams {
		if p.ExpectedVersion == AnyVersion {
			return nil, fmt.Errorf("%w: stream %q: AppendCommit needs an expected version", ErrInvalidAppend, p.StreamID)
		}
		for i, e := range p.Events {
			pending = append(pending, Event{
				ID: e.ID, StreamID: p.StreamID, StreamType: p.StreamType, Version: p.ExpectedVersion + int64(i) + 1,
				Type: e.Type, SchemaVersion: e.SchemaVersion, Data: e.Data, Metadata: e.Metadata, RawMetadata: p.metadata[i],
			})
		}
	}
	wb := &pgx.Batch{}
	if err := with(wb, pending); err != nil {
		return nil, err
	}
	if s.group != nil && !hasCallbacks(wb) {
		events, err := s.group.run(&commit{ctx: ctx, streams: streams, with: wb,
			done: make(chan struct{}), lead: make(chan struct{}, 1)})
		if !errors.Is(err, errRunAlone) {
			return events, err
		}
	}
	return s.commitOne(ctx, streams, wb)
}

// hasCallbacks: a batch whose statements have callbacks is never grouped,
// so that their errors stay their own call's.
func hasCallbacks(b *pgx.Batch) bool {
	for _, q := range b.QueuedQueries {
		if q.Fn != nil {
			return true
		}
	}
	return false
}

// requeue queues what with holds on b, as new entries: pgx keeps each
// entry's prepared statement on it, which a failed batch may have
// deallocated, and a refused group's statements are sent again.
func requeue(b, with *pgx.Batch) {
	for _, q := range with.QueuedQueries {
		b.QueuedQueries = append(b.QueuedQueries, &pgx.QueuedQuery{SQL: q.SQL, Arguments: q.Arguments, Fn: q.Fn})
	}
}

// commitOne is AppendCommit's transaction alone: BEGIN, the inserts of
// streams, with's statements and COMMIT in one batch.
func (s *Store) commitOne(ctx context.Context, streams []*pending, with *pgx.Batch) ([]Event, error) {
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	queue(b, streams)
	requeue(b, with)
	var committed bool
	b.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
		committed = tag.String() == "COMMIT"
		return nil
	})
	br := s.pool.SendBatch(ctx, b)
	// Rollback is a no-op but for releasing the connection when COMMIT
	// ran; after an error it ends the aborted transaction.
	defer func() { _ = br.Tx().Rollback(context.WithoutCancel(ctx)) }()
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, fmt.Errorf("eventstore: begin append: %w", err)
	}
	events, err := readInserts(br, streams)
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("eventstore: append: %w", err)
	}
	if !committed {
		return nil, fmt.Errorf("eventstore: append: %w", pgx.ErrTxCommitRollback)
	}
	return events, nil
}

// begin sends BEGIN and the inserts as one batch, so the round trip of
// pool.Begin is saved, and returns the open transaction once every stream
// is known to be at its version.
func (s *Store) begin(ctx context.Context, streams []*pending) (pgx.Tx, []Event, error) {
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	br := s.pool.SendBatch(ctx, queue(b, streams))
	tx := br.Tx()
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("eventstore: begin append: %w", err)
	}
	events, err := readBatch(br, streams)
	if err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, nil, err
	}
	return tx, events, nil
}

// AppendTx is Append inside the caller's transaction tx, so other rows (an
// idempotency key, an inline read model) commit with the events. It neither
// commits nor rolls back. After an error the transaction must be rolled
// back: a failed insert aborts it, and when one stream conflicts the events
// of the streams before it may already be in it.
//
// It takes a pgx.Tx, not any connection: on a bare connection the inserts of
// several streams would each commit on their own. Append before writing
// anything else in tx where you can: a transaction that wrote first meets a
// version conflict if another appends to the same stream in between (see
// appendSQL), and must then be retried.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, appends ...Append) ([]Event, error) {
	streams, err := prepare(appends)
	if err != nil {
		return nil, err
	}
	if len(streams) == 1 {
		return appendOne(ctx, tx, streams[0])
	}
	return readBatch(tx.SendBatch(ctx, queue(&pgx.Batch{}, streams)), streams)
}

// pending is a validated Append, with its events as the insert's arrays.
type pending struct {
	Append
	ids            [][16]byte // not uuid.UUID: pgx would encode its driver.Valuer string and parse it back
	types          []string
	schemaVersions []int32
	data           []json.RawMessage
	metadata       []json.RawMessage
}

func prepare(appends []Append) ([]*pending, error) {
	if len(appends) == 0 {
		return nil, fmt.Errorf("%w: no streams", ErrInvalidAppend)
	}
	streams := make([]*pending, len(appends))
	var seenStreams map[string]bool
	var seenIDs map[uuid.UUID]bool
	if len(appends) > 1 {
		seenStreams = make(map[string]bool, len(appends))
	}
	if len(appends) > 1 || len(appends[0].Events) > 1 {
		seenIDs = make(map[uuid.UUID]bool)
	}
	for i, a := range appends {
		switch {
		case a.StreamID == "":
			return nil, fmt.Errorf("%w: empty stream id", ErrInvalidAppend)
		case a.StreamType == "":
			return nil, fmt.Errorf("%w: stream %q: empty stream type", ErrInvalidAppend, a.StreamID)
		case a.ExpectedVersion < AnyVersion:
			return nil, fmt.Errorf("%w: stream %q: expected version %d", ErrInvalidAppend, a.StreamID, a.ExpectedVersion)
		case len(a.Events) == 0:
			return nil, fmt.Errorf("%w: stream %q: no events", ErrInvalidAppend, a.StreamID)
		case seenStreams[a.StreamID]:
			// Two inserts into one stream would each check the same head.
			return nil, fmt.Errorf("%w: stream %q appears twice", ErrInvalidAppend, a.StreamID)
		}
		if seenStreams != nil {
			seenStreams[a.StreamID] = true
		}
		p := &pending{
			Append:         a,
			ids:            make([][16]byte, len(a.Events)),
			types:          make([]string, len(a.Events)),
			schemaVersions: make([]int32, len(a.Events)),
			data:           make([]json.RawMessage, len(a.Events)),
			metadata:       make([]json.RawMessage, len(a.Events)),
		}
		p.Events = make([]NewEvent, len(a.Events)) // the caller's slice stays untouched
		for j, e := range a.Events {
			switch {
			case e.Type == "":
				return nil, fmt.Errorf("%w: stream %q event %d: empty event type", ErrInvalidAppend, a.StreamID, j)
			case e.SchemaVersion < 0 || e.SchemaVersion > math.MaxInt32:
				return nil, fmt.Errorf("%w: stream %q event %d: schema version %d", ErrInvalidAppend, a.StreamID, j, e.SchemaVersion)
			case !isJSONObject(e.Data):
				return nil, fmt.Errorf("%w: stream %q event %d: data is not a JSON object", ErrInvalidAppend, a.StreamID, j)
			case e.ID != uuid.Nil && seenIDs[e.ID]:
				return nil, fmt.Errorf("%w: stream %q event %d: id %s given twice", ErrInvalidAppend, a.StreamID, j, e.ID)
			}
			if e.ID == uuid.Nil {
				id, err := uuid.NewV7()
				if err != nil {
					return nil, fmt.Errorf("eventstore: generate event id: %w", err)
				}
				e.ID = id
			} else if seenIDs != nil {
				seenIDs[e.ID] = true
			}
			if e.SchemaVersion == 0 {
				e.SchemaVersion = 1
			}
			metadata, err := json.Marshal(e.Metadata)
			if err != nil {
				return nil, fmt.Errorf("eventstore: encode metadata: %w", err)
			}
			p.Events[j] = e
			p.ids[j] = e.ID
			p.types[j] = e.Type
			p.schemaVersions[j] = int32(e.SchemaVersion)
			p.data[j] = e.Data
			p.metadata[j] = metadata
		}
		streams[i] = p
	}
	return streams, nil
}

// isJSONObject also refuses JSON that jsonb would accept but that is not an
// object, since event data is decoded into structs.
func isJSONObject(data []byte) bool {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(data)
}

func (p *pending) args() []any {
	if len(p.Events) == 1 {
		return []any{p.StreamID, p.StreamType, p.ExpectedVersion, p.ids[0], p.types[0], p.schemaVersions[0], p.data[0], p.metadata[0]}
	}
	return []any{p.StreamID, p.StreamType, p.ExpectedVersion, p.ids, p.types, p.schemaVersions, p.data, p.metadata}
}

// sql is the statement that appends p's events.
func (p *pending) sql() string {
	if len(p.Events) == 1 {
		return appendSQL
	}
	return appendManySQL
}

func queue(b *pgx.Batch, streams []*pending) *pgx.Batch {
	for _, p := range streams {
		b.Queue(p.sql(), p.args()...)
	}
	return b
}

func appendOne(ctx context.Context, db DBTX, p *pending) ([]Event, error) {
	return p.recorded(db.Query(ctx, p.sql(), p.args()...))
}

// readBatch reads the results of the inserts queued for streams on br and
// closes it. db is the connection br runs on, free again once br is closed.
func readBatch(br pgx.BatchResults, streams []*pending) ([]Event, error) {
	all, err := readInserts(br, streams)
	if err != nil {
		_ = br.Close() // the first stream's error is the one that matters
		return nil, err
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("eventstore: append: %w", err)
	}
	return all, nil
}

// readInserts reads the results of the inserts queued for streams on br,
// the next results on it, and leaves br open.
func readInserts(br pgx.BatchResults, streams []*pending) ([]Event, error) {
	var all []Event
	for _, p := range streams {
		events, err := p.recorded(br.Query())
		if err != nil {
			return nil, err
		}
		all = append(all, events...)
	}
	return all, nil
}

// recorded reads what the insert returned and closes rows. A stream not at
// the expected version is an error the insert raised (see fail).
func (p *pending) recorded(rows pgx.Rows, err error) ([]Event, error) {
	if err != nil {
		return nil, p.fail(err)
	}
	type row struct {
		position, version int64
		transactionID     uint64
		recordedAt        time.Time
		hash              []byte
	}
	got := make([]row, 0, len(p.Events))
	var r row
	_, err = pgx.ForEachRow(rows, []any{&r.position, &r.transactionID, &r.version, &r.recordedAt, &r.hash}, func() error {
		got = append(got, r)
		return nil
	})
	if err != nil {
		return nil, p.fail(err)
	}
	if len(got) != len(p.Events) {
		return nil, fmt.Errorf("eventstore: append to stream %q: %d events given, %d recorded", p.StreamID, len(p.Events), len(got))
	}
	// RETURNING promises no order, but the versions are first..first+n-1 in
	// the order of the events given.
	first := got[0].version
	for _, r := range got {
		first = min(first, r.version)
	}
	events := make([]Event, len(p.Events))
	for _, r := range got {
		i := r.version - first // in range: the unique key forbids repeated versions
		events[i] = p.event(int(i), r.position, r.version, r.transactionID, r.recordedAt, r.hash)
	}
	return events, nil
}

// event is p's i-th event as recorded.
func (p *pending) event(i int, position, version int64, transactionID uint64, recordedAt time.Time, hash []byte) Event {
	e := p.Events[i]
	return Event{
		ID:            e.ID,
		StreamID:      p.StreamID,
		StreamType:    p.StreamType,
		Version:       version,
		Position:      position,
		TransactionID: transactionID,
		Type:          e.Type,
		SchemaVersion: e.SchemaVersion,
		Data:          e.Data,
		Metadata:      e.Metadata,
		RawMetadata:   p.metadata[i],
		RecordedAt:    recordedAt,
		Hash:          hash,
	}
}

// singles is the one statement that appends the one event of each of
// several streams (groupAppendSQL), and, once it has run, what each stream
// recorded.
type singles struct {
	streams  map[string]*pending
	recorded map[*pending]Event
}

// queueSingles queues groupAppendSQL for streams, each with one event and
// none twice; the returned singles gets its rows once the batch runs.
func queueSingles(b *pgx.Batch, streams []*pending) *singles {
	n := len(streams)
	ss := &singles{streams: make(map[string]*pending, n), recorded: make(map[*pending]Event, n)}
	ids, types, expected := make([]string, n), make([]string, n), make([]int64, n)
	eventIDs, eventTypes, schemas := make([][16]byte, n), make([]string, n), make([]int32, n)
	data, metadata := make([]json.RawMessage, n), make([]json.RawMessage, n)
	for i, p := range streams {
		ss.streams[p.StreamID] = p
		ids[i], types[i], expected[i] = p.StreamID, p.StreamType, p.ExpectedVersion
		eventIDs[i], eventTypes[i], schemas[i] = p.ids[0], p.types[0], p.schemaVersions[0]
		data[i], metadata[i] = p.data[0], p.metadata[0]
	}
	b.Queue(groupAppendSQL, ids, types, expected, eventIDs, eventTypes, schemas, data, metadata).Query(ss.read)
	return ss
}

func (ss *singles) read(rows pgx.Rows) error {
	var (
		streamID          string
		position, version int64
		transactionID     uint64
		recordedAt        time.Time
		hash              []byte
	)
	_, err := pgx.ForEachRow(rows, []any{&streamID, &position, &transactionID, &version, &recordedAt, &hash}, func() error {
		p := ss.streams[streamID]
		if p == nil {
			return fmt.Errorf("eventstore: group append: a row of stream %q, which the group does not append to", streamID)
		}
		ss.recorded[p] = p.event(0, position, version, transactionID, recordedAt, hash)
		return nil
	})
	if err != nil {
		return err
	}
	if len(ss.recorded) != len(ss.streams) {
		return fmt.Errorf("eventstore: group append: %d streams given, %d recorded", len(ss.streams), len(ss.recorded))
	}
	return nil
}

// event is what the shared insert recorded for p, if p was in it.
func (ss *singles) event(p *pending) (Event, bool) {
	if ss == nil {
		return Event{}, false
	}
	e, ok := ss.recorded[p]
	return e, ok
}

// refused is the conflict that upsell_refuse_append raised: the stream's
// version when the append ran is the error's detail.
func (p *pending) refused(pgErr *pgconn.PgError) error {
	actual, err := strconv.ParseInt(pgErr.Detail, 10, 64)
	if err != nil {
		return fmt.Errorf("eventstore: append to stream %q refused, with a version that does not parse: %w", p.StreamID, pgErr)
	}
	c := &VersionConflictError{StreamID: p.StreamID, Expected: p.ExpectedVersion, Actual: actual}
	if actual == p.ExpectedVersion || p.ExpectedVersion == AnyVersion {
		c.Err = errWroteBeforeHead // the version was right: the transaction id was not
	}
	return c
}

// fail translates a refused append (upsell_refuse_append) and the unique
// violations an append can meet; for those, the constraint name, not the
// message, says which.
func (p *pending) fail(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == appendRefused {
		return p.refused(pgErr)
	}
	if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation {
		switch pgErr.ConstraintName {
		case streamVersionKey:
			return &VersionConflictError{StreamID: p.StreamID, Expected: p.ExpectedVersion, Actual: -1, Err: err}
		case eventIDKey:
			return fmt.Errorf("eventstore: append to stream %q: %w: %w", p.StreamID, ErrDuplicateEvent, err)
		}
	}
	return fmt.Errorf("eventstore: append to stream %q: %w", p.StreamID, err)
}
