package eventstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

const eventColumns = `position, event_id, stream_id, stream_type, version, transaction_id,
    event_type, schema_version, data, metadata, recorded_at, hash`

func scanEvent(row pgx.CollectableRow) (Event, error) {
	e, err := scanStored(row)
	if err != nil {
		return e, err
	}
	// The raw text is kept for the hash; the struct is decoded from it.
	if err := decodeMetadata(e.RawMetadata, &e.Metadata); err != nil {
		return e, fmt.Errorf("event %s: metadata: %w", e.ID, err)
	}
	return e, nil
}

// scanStored reads a row of eventColumns as stored, without decoding the
// metadata: verification judges a row whatever was written into it.
func scanStored(row pgx.CollectableRow) (Event, error) {
	var e Event
	err := row.Scan(&e.Position, &e.ID, &e.StreamID, &e.StreamType, &e.Version, &e.TransactionID,
		&e.Type, &e.SchemaVersion, (*[]byte)(&e.Data), (*[]byte)(&e.RawMetadata), &e.RecordedAt, &e.Hash)
	return e, err
}

// LoadOptions limits a load to the stream as it was at some point.
type LoadOptions struct {
	UpToVersion int64     // 0: every version
	UpTo        time.Time // zero: whenever recorded
	// AfterVersion skips the versions up to it, which the caller has
	// already (a cached aggregate); 0: from the first.
	AfterVersion int64
}

// Load returns a stream's events in version order; an unknown stream gives
// no events and no error.
func (s *Store) Load(ctx context.Context, streamID string, opts LoadOptions) ([]Event, error) {
	return LoadTx(ctx, s.pool, streamID, opts)
}

// LoadTx is Load on db, typically a transaction that appends next.
//
// With UpTo set it stops before the first event recorded after UpTo.
// recorded_at is the start of the appending transaction, so a transaction
// that started early and appended late can give a later version an earlier
// time; stopping, rather than filtering, keeps the result a prefix of the
// stream, the only thing a state can be rebuilt from.
func LoadTx(ctx context.Context, db DBTX, streamID string, opts LoadOptions) ([]Event, error) {
	sql, args, err := loadQuery(streamID, opts)
	if err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("eventstore: load stream %q: %w", streamID, err)
	}
	return collectStream(rows, streamID, opts)
}

// QueueLoad queues Load's query on b, so that a stream's load shares a round
// trip with other reads. Once b has been sent and its results read (Close),
// *events holds the stream; an error of the load is the batch's.
func QueueLoad(b *pgx.Batch, streamID string, opts LoadOptions, events *[]Event) error {
	sql, args, err := loadQuery(streamID, opts)
	if err != nil {
		return err
	}
	b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
		var err error
		*events, err = collectStream(rows, streamID, opts)
		return err
	})
	return nil
}

func loadQuery(streamID string, opts LoadOptions) (string, []any, error) {
	if opts.UpToVersion < 0 || opts.AfterVersion < 0 {
		return "", nil, fmt.Errorf("eventstore: load stream %q: negative version %d", streamID, min(opts.UpToVersion, opts.AfterVersion))
	}
	upToVersion := opts.UpToVersion
	if upToVersion == 0 {
		upToVersion = math.MaxInt64
	}
	if opts.AfterVersion > 0 {
		return `SELECT ` + eventColumns + ` FROM events
WHERE stream_id = $1 AND version > $2 AND version <= $3 ORDER BY version`, []any{streamID, opts.AfterVersion, upToVersion}, nil
	}
	return `SELECT ` + eventColumns + ` FROM events
WHERE stream_id = $1 AND version <= $2 ORDER BY version`, []any{streamID, upToVersion}, nil
}

// collectStream reads a stream's rows, stopping at opts.UpTo, and closes
// rows.
func collectStream(rows pgx.Rows, streamID string, opts LoadOptions) ([]Event, error) {
	defer rows.Close()
	events := []Event{}
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("eventstore: load stream %q: %w", streamID, err)
		}
		if !opts.UpTo.IsZero() && e.RecordedAt.After(opts.UpTo) {
			break
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("eventstore: load stream %q: %w", streamID, err)
	}
	return events, nil
}

// StreamVersion returns the version of a stream's last event, 0 when the
// stream has none.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	v, err := streamVersion(ctx, s.pool, streamID)
	if err != nil {
		return 0, fmt.Errorf("eventstore: version of stream %q: %w", streamID, err)
	}
	return v, nil
}

func streamVersion(ctx context.Context, db DBTX, streamID string) (int64, error) {
	var v int64
	err := db.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1`, streamID).Scan(&v)
	return v, err
}

// Cursor is a reader's place in the log: the last event it has read. The
// zero Cursor is the start of the log.
type Cursor struct {
	TransactionID uint64
	Position      int64
}

// String gives the form ParseCursor reads, "<transaction id>:<position>".
func (c Cursor) String() string {
	return strconv.FormatUint(c.TransactionID, 10) + ":" + strconv.FormatInt(c.Position, 10)
}

// ParseCursor reads a cursor written by Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	xid, pos, ok := strings.Cut(s, ":")
	if !ok {
		return Cursor{}, fmt.Errorf("eventstore: cursor %q: want <transaction id>:<position>", s)
	}
	var c Cursor
	var err error
	if c.TransactionID, err = strconv.ParseUint(xid, 10, 64); err != nil {
		return Cursor{}, fmt.Errorf("eventstore: cursor %q: transaction id: %w", s, err)
	}
	if c.Position, err = strconv.ParseInt(pos, 10, 64); err != nil {
		return Cursor{}, fmt.Errorf("eventstore: cursor %q: position: %w", s, err)
	}
	if c.Position < 0 {
		return Cursor{}, fmt.Errorf("eventstore: cursor %q: negative position", s)
	}
	return c, nil
}

// ReadLog returns up to limit events after the cursor in commit order, and
// the cursor of the last one (after itself when there are none). It reads
// only events of transactions below the snapshot's xmin: those have all
// ended, so no event can later commit behind the returned cursor. Events of
// a transaction still open, and of every transaction after it, wait until it
// ends.
func (s *Store) ReadLog(ctx context.Context, after Cursor, limit int) ([]Event, Cursor, error) {
	return ReadLogTx(ctx, s.pool, after, limit)
}

// ReadLogTx is ReadLog on a given connection or transaction, for a reader
// that writes its checkpoint on the connection that holds its lock.
func ReadLogTx(ctx context.Context, db DBTX, after Cursor, limit int) ([]Event, Cursor, error) {
	return readLog(ctx, db, after, limit, `AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())`)
}

// readLog reads events after the cursor in log order, with an extra
// condition.
func readLog(ctx context.Context, db DBTX, after Cursor, limit int, cond string) ([]Event, Cursor, error) {
	if limit <= 0 {
		return nil, after, fmt.Errorf("eventstore: read log: limit %d is not positive", limit)
	}
	rows, err := db.Query(ctx, `SELECT `+eventColumns+` FROM events
WHERE (transaction_id, position) > ($1::xid8, $2::bigint) `+cond+`
ORDER BY transaction_id, position
LIMIT $3`, after.TransactionID, after.Position, limit)
	if err != nil {
		return nil, after, fmt.Errorf("eventstore: read log after %s: %w", after, err)
	}
	events, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, after, fmt.Errorf("eventstore: read log after %s: %w", after, err)
	}
	if len(events) == 0 {
		return events, after, nil
	}
	last := events[len(events)-1]
	return events, Cursor{TransactionID: last.TransactionID, Position: last.Position}, nil
}

// Head returns the cursor of the newest event ReadLog can return now, the
// zero Cursor when there is none; a reader's lag is the distance to it.
func (s *Store) Head(ctx context.Context) (Cursor, error) {
	var c Cursor
	err := s.pool.QueryRow(ctx, `SELECT transaction_id, position FROM events
WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id DESC, position DESC
LIMIT 1`).Scan(&c.TransactionID, &c.Position)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Cursor{}, fmt.Errorf("eventstore: read log head: %w", err)
	}
	return c, nil
}

// ReadCommittedTx returns up to limit events after the cursor in log order
// that are committed and visible to db now, including those behind
// transactions still open, which ReadLog holds back. Only a reader that has
// locked out every writer it cares about may use it: a rebuild swapping in
// a read model while holding the live table's lock, say. Anyone else would
// skip the events that commit later behind its cursor.
func ReadCommittedTx(ctx context.Context, db DBTX, after Cursor, limit int) ([]Event, Cursor, error) {
	return readLog(ctx, db, after, limit, "")
}

// Less reports whether c is before d in the log.
func (c Cursor) Less(d Cursor) bool {
	return c.TransactionID < d.TransactionID || c.TransactionID == d.TransactionID && c.Position < d.Position
}

// validStreamType is what ReadLogOfTx writes into its statement.
var validStreamType = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// ReadLogOfTx is ReadLogTx for the streams of one type, without the columns
// a projection does not need: Metadata, RawMetadata and Hash stay empty.
// It is what a rebuild reads, in large batches. The cursor it returns is
// that of the last event of the type; the events of other types it passes
// over are no concern of the reader's.
func ReadLogOfTx(ctx context.Context, db DBTX, after Cursor, limit int, streamType string) ([]Event, Cursor, error) {
	if limit <= 0 {
		return nil, after, fmt.Errorf("eventstore: read log: limit %d is not positive", limit)
	}
	if !validStreamType.MatchString(streamType) {
		return nil, after, fmt.Errorf("eventstore: read log: stream type %q", streamType)
	}
	// The type is written into the statement, not passed as a parameter,
	// so that the planner can use a partial index on it (migration 008)
	// whatever plan it caches.
	rows, err := db.Query(ctx, `SELECT position, event_id, stream_id, version, transaction_id, event_type, schema_version, data, recorded_at
FROM events
WHERE (transaction_id, position) > ($1::xid8, $2::bigint) AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
  AND stream_type = '`+streamType+`'
ORDER BY transaction_id, position
LIMIT $3`, after.TransactionID, after.Position, limit)
	if err != nil {
		return nil, after, fmt.Errorf("eventstore: read log after %s: %w", after, err)
	}
	events := make([]Event, 0, limit)
	var e Event
	e.StreamType = streamType
	// The columns are taken from the row's raw values, when they come in
	// the formats pgx asks for by default (binary numbers, uuid and time;
	// text for text and jsonb), rather than scanned: a scan goes through
	// pgx's scan plans for every column of every row, a fifth of what
	// reading costs here. The event types are a handful of strings, made
	// once per batch, and the data of the whole batch goes into a few large
	// buffers, instead of an allocation each. In any other format the row
	// is scanned as usual. The formats are known once the first row has
	// come.
	scans := []any{&e.Position, &e.ID, &e.StreamID, &e.Version, &e.TransactionID, &e.Type,
		&e.SchemaVersion, (*[]byte)(&e.Data), &e.RecordedAt}
	raw, first := false, true
	types := map[string]string{}
	var arena []byte
	err = func() error {
		defer rows.Close()
		for rows.Next() {
			if first {
				first = false
				raw = rawLayout(rows.FieldDescriptions())
			}
			if !raw {
				if err := rows.Scan(scans...); err != nil {
					return err
				}
				events = append(events, e)
				continue
			}
			values := rows.RawValues()
			for i, size := range rawSizes {
				if values[i] == nil || size > 0 && len(values[i]) != size {
					return fmt.Errorf("row %d: column %d is null or of %d bytes", len(events)+1, i+1, len(values[i]))
				}
			}
			e.Position = int64(binary.BigEndian.Uint64(values[0]))
			copy(e.ID[:], values[1])
			e.StreamID = string(values[2])
			e.Version = int64(binary.BigEndian.Uint64(values[3]))
			e.TransactionID = binary.BigEndian.Uint64(values[4])
			t, ok := types[string(values[5])]
			if !ok {
				t = string(values[5])
				types[t] = t
			}
			e.Type = t
			e.SchemaVersion = int(int32(binary.BigEndian.Uint32(values[6])))
			data := values[7]
			if cap(arena)-len(arena) < len(data) {
				arena = make([]byte, 0, max(1<<20, len(data)))
			}
			start := len(arena)
			arena = append(arena, data...)
			e.Data = arena[start:len(arena):len(arena)]
			var err error
			if e.RecordedAt, err = timestamptz(values[8]); err != nil {
				return fmt.Errorf("event %s: recorded_at: %w", e.ID, err)
			}
			events = append(events, e)
		}
		return rows.Err()
	}()
	if err != nil {
		return nil, after, fmt.Errorf("eventstore: read log after %s: %w", after, err)
	}
	if len(events) == 0 {
		return events, after, nil
	}
	last := events[len(events)-1]
	return events, Cursor{TransactionID: last.TransactionID, Position: last.Position}, nil
}

// rawLayout reports whether ReadLogOfTx's columns came in the formats its
// raw reading expects: bigint, uuid, text, bigint, xid8, text, integer,
// jsonb and timestamptz, each with its length (binary) or as text.
func rawLayout(fields []pgconn.FieldDescription) bool {
	want := []struct {
		oid    uint32
		format int16
	}{
		{pgtype.Int8OID, pgx.BinaryFormatCode},
		{pgtype.UUIDOID, pgx.BinaryFormatCode},
		{pgtype.TextOID, pgx.TextFormatCode},
		{pgtype.Int8OID, pgx.BinaryFormatCode},
		{pgtype.XID8OID, pgx.BinaryFormatCode},
		{pgtype.TextOID, pgx.TextFormatCode},
		{pgtype.Int4OID, pgx.BinaryFormatCode},
		{pgtype.JSONBOID, pgx.TextFormatCode},
		{pgtype.TimestamptzOID, pgx.BinaryFormatCode},
	}
	if len(fields) != len(want) {
		return false
	}
	for i, w := range want {
		if fields[i].DataTypeOID != w.oid || fields[i].Format != w.format {
			return false
		}
	}
	return true
}

// rawSizes is the length of each of ReadLogOfTx's columns in binary
// format, 0 for those of any length (text).
var rawSizes = [...]int{8, 16, 0, 8, 8, 0, 4, 0, 8}

// timestamptz decodes a timestamptz in binary format as pgx does with no
// scan location: microseconds since 2000-01-01 UTC, in the local zone.
func timestamptz(src []byte) (time.Time, error) {
	if len(src) != 8 {
		return time.Time{}, fmt.Errorf("%d bytes", len(src))
	}
	us := int64(binary.BigEndian.Uint64(src))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return time.Time{}, errors.New("infinite")
	}
	const y2k = 946_684_800 // 2000-01-01 in Unix seconds
	return time.Unix(y2k+us/1_000_000, us%1_000_000*1_000), nil
}
