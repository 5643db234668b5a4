package eventstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// StallThreshold is how long the transaction holding the log's readers back
// may have been open, with committed events waiting behind it, before Stall
// calls the log stalled.
const StallThreshold = 5 * time.Second

// stallCountCap bounds the count of unreadable events, so that asking
// stays cheap however long the stall: waiting events are
// new, so the index-only count still visits their heap pages (about 0.3 s
// for 100,000).
const stallCountCap = 100_000

// StallInfo says whether the readers of the log (projectors, relays,
// rebuilds: everything that uses ReadLog) are held back, by how much, and
// by whom.
//
// ReadLog reads only events of transactions below the oldest transaction
// still open on the whole PostgreSQL server, in any database. Events
// committed after that transaction took its id wait until it ends, however
// long that is: an abandoned open transaction stalls every reader.
type StallInfo struct {
	// Horizon is the transaction id below which readers read now: the
	// oldest transaction id still running on the server, the asking
	// session's own not counted, or when none runs the snapshot's xmax
	// (every id below it has ended).
	Horizon uint64
	// UnreadableEvents counts the committed events of this database that
	// no reader can read yet (at most 100,000 are counted).
	UnreadableEvents int64
	// FirstUnreadable is the first of them in log order (zero when none)
	// and FirstUnreadableRecordedAt the start of its transaction.
	FirstUnreadable           Cursor
	FirstUnreadableRecordedAt time.Time
	// Holder is the oldest open transaction on the server, the one the
	// horizon waits for; nil when no transaction with an id is open (or it
	// ended while it was being looked up).
	Holder *StallHolder
	// Threshold is the time Stalled was judged with.
	Threshold time.Duration
	// Stalled: events wait behind a transaction open for Threshold or
	// longer. When the holder's start cannot be seen (a session of another
	// role, and this one lacks pg_read_all_stats), the time since the first
	// unreadable event's transaction started is used instead.
	Stalled bool
}

// StallHolder is an open transaction that holds the log's readers back: a
// session's (see pg_stat_activity) or a prepared one's (pg_prepared_xacts).
type StallHolder struct {
	PID             int32  // the backend's process id; 0 for a prepared transaction
	Database        string // the database it is connected to, maybe not this one
	SameDatabase    bool   // Database is the one Stall was asked about
	ApplicationName string
	User            string
	// State is pg_stat_activity's state ("idle in transaction", "active",
	// ...), "prepared" for a prepared transaction, "" when this role may
	// not see it.
	State         string
	TransactionID uint64 // its transaction id (xid8)
	BackendXmin   uint32 // pg_stat_activity.backend_xmin, 0 when none
	// Started is when the transaction began (prepared: when it was
	// prepared), zero when this role may not see it; Open is how long ago.
	Started time.Time
	Open    time.Duration
	// InState is how long it has been in State: for an idle transaction,
	// the time idle_in_transaction_session_timeout measures.
	InState time.Duration
	GID     string // a prepared transaction's global id
}

// Stall reports whether the readers of the log are stalled, judged with
// StallThreshold.
func Stall(ctx context.Context, db DBTX) (StallInfo, error) {
	return StallAfter(ctx, db, StallThreshold)
}

// stallSQL reads, in one statement and so from one snapshot, the horizon
// as another session sees it, the events waiting above it and the
// transaction it waits for.
//
// pg_snapshot_xmin counts the asking session's own transaction id, when it
// has one; the in-progress list (xip) never does. So the horizon of the
// other sessions is the smallest id in that list, or xmax when it is
// empty. Events of an own transaction are not committed, so not counted:
// the count (of transaction_id in the index events_log_order, from the
// horizon up, capped) and the first event are taken below and above the
// own id, two ranges the index serves; a filter "not our id" instead makes
// the planner misjudge it and read the whole table. A session's
// backend_xid is a 32-bit xid;
// it is matched against the snapshot's full ids, which are all recent.
// Parallel workers share their leader's id and are left out, as is the
// asking session itself.
var stallSQL = `WITH snap AS MATERIALIZED (
    SELECT s, coalesce((SELECT min(x) FROM pg_snapshot_xip(s) x), pg_snapshot_xmax(s)) AS horizon,
        coalesce(pg_current_xact_id_if_assigned(), '0') AS own, clock_timestamp() AS at
    FROM pg_current_snapshot() s
), holder AS MATERIALIZED (
    SELECT * FROM (
        SELECT x AS xid, a.pid, a.datname::text AS datname, a.application_name, a.usename::text AS usename,
            a.state, a.backend_xmin, a.xact_start AS started, a.state_change, '' AS gid
        FROM snap, pg_snapshot_xip(snap.s) x
        JOIN pg_stat_activity a ON a.backend_xid = xid(x)
        WHERE a.pid <> pg_backend_pid() AND a.leader_pid IS NULL
        UNION ALL
        SELECT x, 0, p.database::text, '', p.owner::text, 'prepared', NULL, p.prepared, p.prepared, p.gid
        FROM snap, pg_snapshot_xip(snap.s) x
        JOIN pg_prepared_xacts p ON p.transaction = xid(x)
    ) h ORDER BY xid LIMIT 1
), first AS (
    SELECT * FROM (
        (SELECT transaction_id, position, recorded_at FROM events
         WHERE transaction_id >= (SELECT horizon FROM snap) AND transaction_id < (SELECT own FROM snap)
         ORDER BY transaction_id, position LIMIT 1)
        UNION ALL
        (SELECT transaction_id, position, recorded_at FROM events
         WHERE transaction_id >= (SELECT horizon FROM snap) AND transaction_id > (SELECT own FROM snap)
         ORDER BY transaction_id, position LIMIT 1)
    ) f ORDER BY transaction_id, position LIMIT 1
)
SELECT (SELECT horizon FROM snap)::text,
    least((SELECT count(*) FROM (SELECT 1 FROM events
            WHERE transaction_id >= (SELECT horizon FROM snap) AND transaction_id < (SELECT own FROM snap)
            LIMIT ` + strconv.Itoa(stallCountCap) + `) w)
        + (SELECT count(*) FROM (SELECT 1 FROM events
            WHERE transaction_id >= (SELECT horizon FROM snap) AND transaction_id > (SELECT own FROM snap)
            LIMIT ` + strconv.Itoa(stallCountCap) + `) w), ` + strconv.Itoa(stallCountCap) + `),
    (SELECT transaction_id::text FROM first), (SELECT position FROM first), (SELECT recorded_at FROM first),
    h.xid::text, h.pid, h.datname, h.datname = current_database(), h.application_name, h.usename, h.state,
    h.backend_xmin::text, h.started,
    greatest(EXTRACT(EPOCH FROM (SELECT at FROM snap) - h.started), 0)::float8,
    greatest(EXTRACT(EPOCH FROM (SELECT at FROM snap) - h.state_change), 0)::float8,
    h.gid, greatest(EXTRACT(EPOCH FROM (SELECT at FROM snap) - (SELECT recorded_at FROM first)), 0)::float8
FROM (SELECT 1) one LEFT JOIN holder h ON true`

// StallAfter is Stall with another threshold. Run it outside a transaction
// that has written: an own transaction id is left out of the horizon (it
// reports the other sessions), but it does hold every other reader back.
func StallAfter(ctx context.Context, db DBTX, threshold time.Duration) (StallInfo, error) {
	var (
		s                             = StallInfo{Threshold: threshold}
		horizon                       string
		firstXID, holderXID, holderXm *string
		firstPos                      *int64
		firstAt, started              *time.Time
		pid                           *int32
		datname, app, user, state     *string
		sameDB                        *bool
		openSec, stateSec, firstSec   *float64
		gid                           *string
	)
	err := db.QueryRow(ctx, stallSQL).Scan(&horizon, &s.UnreadableEvents, &firstXID, &firstPos, &firstAt,
		&holderXID, &pid, &datname, &sameDB, &app, &user, &state, &holderXm, &started, &openSec, &stateSec, &gid, &firstSec)
	if err != nil {
		return StallInfo{}, fmt.Errorf("eventstore: look for a stalled log: %w", err)
	}
	if _, err := fmt.Sscan(horizon, &s.Horizon); err != nil {
		return StallInfo{}, fmt.Errorf("eventstore: look for a stalled log: horizon %q: %w", horizon, err)
	}
	if firstXID != nil && firstPos != nil {
		if _, err := fmt.Sscan(*firstXID, &s.FirstUnreadable.TransactionID); err != nil {
			return StallInfo{}, fmt.Errorf("eventstore: look for a stalled log: %w", err)
		}
		s.FirstUnreadable.Position = *firstPos
		if firstAt != nil {
			s.FirstUnreadableRecordedAt = *firstAt
		}
	}
	if holderXID != nil {
		h := &StallHolder{}
		if _, err := fmt.Sscan(*holderXID, &h.TransactionID); err != nil {
			return StallInfo{}, fmt.Errorf("eventstore: look for a stalled log: %w", err)
		}
		if holderXm != nil {
			if _, err := fmt.Sscan(*holderXm, &h.BackendXmin); err != nil {
				return StallInfo{}, fmt.Errorf("eventstore: look for a stalled log: %w", err)
			}
		}
		h.PID = deref(pid)
		h.Database, h.SameDatabase = deref(datname), deref(sameDB)
		h.ApplicationName, h.User, h.State, h.GID = deref(app), deref(user), deref(state), deref(gid)
		if started != nil {
			h.Started = *started
			h.Open = seconds(deref(openSec))
			h.InState = seconds(deref(stateSec))
		}
		s.Holder = h
	}
	if s.UnreadableEvents > 0 {
		switch {
		case s.Holder != nil && !s.Holder.Started.IsZero():
			s.Stalled = s.Holder.Open >= threshold
		case firstSec != nil:
			s.Stalled = seconds(*firstSec) >= threshold
		}
	}
	return s, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func seconds(f float64) time.Duration {
	return time.Duration(f * float64(time.Second))
}

// Prepared reports whether the holder is a prepared transaction (two-phase
// commit), which no session owns and no timeout ends.
func (h StallHolder) Prepared() bool {
	return h.State == "prepared"
}

// Name says which transaction it is, e.g. "transaction pid 4242" or
// "prepared transaction 'gid'".
func (h StallHolder) Name() string {
	if h.Prepared() {
		return fmt.Sprintf("prepared transaction %q (transaction id %d)", h.GID, h.TransactionID)
	}
	return fmt.Sprintf("transaction pid %d", h.PID)
}

// Describe says where it comes from and how long it has been open, e.g.
// "application psql, database shop, idle in transaction for 3m12s, open
// for 3m15s".
func (h StallHolder) Describe() string {
	var parts []string
	if !h.Prepared() {
		app := "no application_name"
		if h.ApplicationName != "" {
			app = "application " + h.ApplicationName
		}
		parts = append(parts, app)
	}
	db := "database " + h.Database
	if h.Database == "" {
		db = "no database"
	}
	if !h.SameDatabase && h.Database != "" {
		db += " (another database of the server)"
	}
	parts = append(parts, db)
	if h.User != "" {
		parts = append(parts, "user "+h.User)
	}
	switch {
	case h.Started.IsZero():
		parts = append(parts, "its state and age are not visible to this role (grant it pg_read_all_stats)")
	case h.Prepared():
		parts = append(parts, "prepared "+roundDuration(h.Open)+" ago")
	default:
		if h.State != "" {
			parts = append(parts, h.State+" for "+roundDuration(h.InState))
		}
		parts = append(parts, "open for "+roundDuration(h.Open))
	}
	return strings.Join(parts, ", ")
}

// EndsBy says how the transaction will end, or can be ended.
func (h StallHolder) EndsBy() string {
	switch {
	case h.Prepared():
		return fmt.Sprintf("it ends only by COMMIT PREPARED %s or ROLLBACK PREPARED %s in database %s; no timeout ends a prepared transaction",
			quoteLiteral(h.GID), quoteLiteral(h.GID), h.Database)
	case strings.HasPrefix(h.State, "idle in transaction"):
		return fmt.Sprintf("it ends by that session's idle_in_transaction_session_timeout (when set) or SELECT pg_terminate_backend(%d)", h.PID)
	case h.State == "active":
		return fmt.Sprintf("it ends when its statement and transaction finish (statement_timeout) or by SELECT pg_terminate_backend(%d)", h.PID)
	default:
		return fmt.Sprintf("it ends when its session ends it, or by SELECT pg_terminate_backend(%d)", h.PID)
	}
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// String says in one line what holds the log back, e.g. "120 events wait
// behind transaction pid 4242 (application psql, database shop, idle in
// transaction for 3m12s, open for 3m15s); it ends by ...", or "every
// committed event is readable". Whether that is a stall is Stalled.
func (s StallInfo) String() string {
	if s.UnreadableEvents == 0 {
		return "every committed event is readable"
	}
	var b strings.Builder
	n := fmt.Sprintf("%d events wait", s.UnreadableEvents)
	if s.UnreadableEvents == 1 {
		n = "1 event waits"
	} else if s.UnreadableEvents >= stallCountCap {
		n = fmt.Sprintf("at least %d events wait", s.UnreadableEvents)
	}
	b.WriteString(n)
	if s.Holder == nil {
		fmt.Fprintf(&b, " behind transaction id %d, which ended or is not visible", s.Horizon)
		return b.String()
	}
	fmt.Fprintf(&b, " behind %s (%s); %s", s.Holder.Name(), s.Holder.Describe(), s.Holder.EndsBy())
	return b.String()
}

// roundDuration prints d as a person reads it: 3m12s, 1.5s, 240ms.
func roundDuration(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}
