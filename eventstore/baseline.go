package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// After a logical restore (pg_dump, pg_restore) into another cluster, the
// rows keep the transaction ids of the cluster they were dumped from. When
// the new server's ids are lower, its new events sort before the restored
// ones in the log's (transaction_id, position) order: readers whose
// checkpoints hold the old, high ids never read them, and restored events
// above the new server's horizon cannot be read at all. Ahead detects that
// state; Rebaseline repairs it (docs/restore.md).

// The other tables that hold transaction ids of the log's order: the
// checkpoints of the projectors and relays (migration 003) and the relay's
// Watermill SQL topic (migration 006, relay.Topic "upsell_events"), whose
// subscribers read it as the relay reads the log.
const (
	checkpointsTable = "projection_checkpoints"
	topicTable       = "watermill_upsell_events"
	topicOffsets     = "watermill_offsets_upsell_events"
)

// BaselineTransactionID is the transaction id Rebaseline gives every event
// and message it rebaselines: below any id a server assigns (the first
// normal one is 3), so the restored log comes before every new append, in
// position order.
const BaselineTransactionID uint64 = 1

// AheadInfo is what Ahead found: the highest transaction id stored in each
// table of the log's order, and the server's next one.
type AheadInfo struct {
	// Next is pg_snapshot_xmax of the asking statement's snapshot: the
	// first transaction id this server has not yet assigned. A row the
	// snapshot sees was written by a transaction below it, so a stored id
	// at or above it was assigned by another cluster.
	Next uint64 `json:"next"`
	// The highest transaction id stored, 0 when none (or the table does
	// not exist): of the events, the checkpoints, the topic's messages and
	// its consumer groups' offsets.
	Events         uint64 `json:"events"`
	Checkpoints    uint64 `json:"checkpoints"`
	Messages       uint64 `json:"messages"`
	ConsumerGroups uint64 `json:"consumer_groups"`
}

// Ahead reports whether a table holds a transaction id at or above Next.
func (a AheadInfo) Ahead() bool {
	return max(a.Events, a.Checkpoints, a.Messages, a.ConsumerGroups) >= a.Next
}

// String says what is ahead, or that nothing is.
func (a AheadInfo) String() string {
	if !a.Ahead() {
		return fmt.Sprintf("transaction ids are below this server's (next %d)", a.Next)
	}
	var parts []string
	for _, t := range []struct {
		what string
		max  uint64
	}{{"events", a.Events}, {"checkpoints", a.Checkpoints}, {"topic messages", a.Messages}, {"topic consumer groups", a.ConsumerGroups}} {
		if t.max >= a.Next {
			parts = append(parts, fmt.Sprintf("%s up to %d", t.what, t.max))
		}
	}
	return fmt.Sprintf("transaction ids ahead of this server's (next %d): %s", a.Next, strings.Join(parts, ", "))
}

// presentTables says which of the optional tables exist.
type presentTables struct{ checkpoints, topic, offsets bool }

func present(ctx context.Context, db DBTX) (presentTables, error) {
	var p presentTables
	err := db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL, to_regclass($3) IS NOT NULL`,
		checkpointsTable, topicTable, topicOffsets).Scan(&p.checkpoints, &p.topic, &p.offsets)
	return p, err
}

// Ahead reports whether the log, the checkpoints or the relay's SQL topic
// hold transaction ids at or above the server's next one: the database was
// restored from another cluster, and Rebaseline must run before anything
// appends to or reads the log. It is cheap (the highest ids come from
// indexes, or from tables of a few rows) and takes no transaction id, so
// /readyz may ask it every time.
func Ahead(ctx context.Context, db DBTX) (AheadInfo, error) {
	p, err := present(ctx, db)
	if err != nil {
		return AheadInfo{}, fmt.Errorf("eventstore: look for transaction ids ahead: %w", err)
	}
	// One statement, so one snapshot: every row it sees is below Next
	// unless it came from another cluster.
	maxOf := func(yes bool, sql string) string {
		if !yes {
			return `'0'::xid8`
		}
		return `coalesce((` + sql + `), '0')`
	}
	var a AheadInfo
	err = db.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot()),
    coalesce((SELECT transaction_id FROM events ORDER BY transaction_id DESC LIMIT 1), '0'),
    `+maxOf(p.checkpoints, `SELECT max(transaction_id) FROM `+checkpointsTable)+`,
    `+maxOf(p.topic, `SELECT transaction_id FROM `+topicTable+` ORDER BY transaction_id DESC LIMIT 1`)+`,
    `+maxOf(p.offsets, `SELECT max(last_processed_transaction_id) FROM `+topicOffsets)).
		Scan(&a.Next, &a.Events, &a.Checkpoints, &a.Messages, &a.ConsumerGroups)
	if err != nil {
		return AheadInfo{}, fmt.Errorf("eventstore: look for transaction ids ahead: %w", err)
	}
	return a, nil
}

// Move is a reader's place before and after Rebaseline: a checkpoint of
// projection_checkpoints (Cursor.Position is the event's position), or a
// consumer group of the SQL topic (Position is the message's offset).
type Move struct {
	Kind   string `json:"kind"` // "checkpoint" or "consumer group"
	Name   string `json:"name"`
	Before Cursor `json:"before"`
	After  Cursor `json:"after"`
}

// RebaselineReport is what Rebaseline did, or with DryRun would do.
type RebaselineReport struct {
	DryRun bool `json:"dry_run"`
	// Before is what Ahead found, inside the transaction, with the tables
	// locked. When nothing is ahead, Rebaseline changes nothing and the
	// rest is zero.
	Before AheadInfo `json:"before"`
	// Events and Messages count the rows given BaselineTransactionID.
	Events   int64 `json:"events"`
	Messages int64 `json:"messages"`
	// Moves lists every checkpoint and consumer group with a transaction
	// id (those at the start, id 0, read everything and stay).
	Moves []Move `json:"moves"`
}

// Changed reports whether Rebaseline changed (dry run: would change)
// anything.
func (r RebaselineReport) Changed() bool { return r.Before.Ahead() }

// TxBeginner begins transactions: *pgxpool.Pool, *pgx.Conn.
type TxBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// RebaselineLockTimeout bounds the wait for the tables' locks: a service
// still running holds them; stop it, then try again.
const RebaselineLockTimeout = "10s"

// ErrRebaselineLocked is matched by Rebaseline's error when it could not
// lock the tables in time.
var ErrRebaselineLocked = errors.New("eventstore: rebaseline: the tables are in use: stop every service on this database (serve, relay, billing-tail) and try again")

// Rebaseline maps the log to an order below this server's transaction ids,
// keeping every reader's place, when Ahead finds ids ahead; otherwise it
// changes nothing. In one transaction, with the events, the checkpoints and
// the SQL topic locked against writers:
//
//   - every event gets transaction id BaselineTransactionID, so the log's
//     order becomes position order (a restore keeps positions, and new
//     appends continue after them with this server's ids, which are
//     higher);
//   - every checkpoint c (unless at the start) becomes (1, p), p one below
//     the smallest position of the events that might be unread at c: those
//     after c in the old order, and, to be safe, those with a higher
//     position than c's (an event the new cluster appended before the
//     rebaseline sorts before c in the old order, but was never read).
//     When there is none, p is the last position. A reader may so read
//     again a few events it had read (those committed out of position
//     order near its place), never skip one: projectors' upserts are
//     guarded by version, and the relay's consumers de-duplicate on the
//     event id;
//   - the relay's SQL topic likewise: its messages get id 1, and each
//     consumer group's (last_processed_transaction_id, offset_acked)
//     becomes (1, p) by the same rule over offsets.
//
// The hash chain does not cover transaction ids (hash.go), so it still
// verifies. With dryRun it reads in one snapshot, locks nothing, and
// changes nothing.
func Rebaseline(ctx context.Context, db TxBeginner, dryRun bool) (RebaselineReport, error) {
	opts := pgx.TxOptions{}
	if dryRun {
		opts = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return RebaselineReport{}, fmt.Errorf("eventstore: rebaseline: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	r, err := rebaseline(ctx, tx, dryRun)
	if err != nil {
		return RebaselineReport{}, err
	}
	if dryRun || !r.Changed() {
		return r, nil
	}
	if err := tx.Commit(ctx); err != nil {
		return RebaselineReport{}, fmt.Errorf("eventstore: rebaseline: commit: %w", err)
	}
	return r, nil
}

func rebaseline(ctx context.Context, tx pgx.Tx, dryRun bool) (RebaselineReport, error) {
	fail := func(what string, err error) (RebaselineReport, error) {
		return RebaselineReport{}, fmt.Errorf("eventstore: rebaseline: %s: %w", what, err)
	}
	r := RebaselineReport{DryRun: dryRun, Moves: []Move{}}
	p, err := present(ctx, tx)
	if err != nil {
		return fail("look up the tables", err)
	}
	if !dryRun {
		tables := []string{"events"}
		if p.checkpoints {
			tables = append(tables, checkpointsTable)
		}
		if p.topic {
			tables = append(tables, topicTable)
		}
		if p.offsets {
			tables = append(tables, topicOffsets)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+RebaselineLockTimeout+`'`); err != nil {
			return fail("set the lock timeout", err)
		}
		// EXCLUSIVE: readers may go on reading, nobody writes.
		if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(tables, ", ")+` IN EXCLUSIVE MODE`); err != nil {
			if isLockTimeout(err) {
				return RebaselineReport{}, fmt.Errorf("%w (%v)", ErrRebaselineLocked, err)
			}
			return fail("lock the tables", err)
		}
	}
	if r.Before, err = Ahead(ctx, tx); err != nil {
		return RebaselineReport{}, err
	}
	if !r.Before.Ahead() {
		return r, nil
	}

	// Every place is computed from the old order before anything changes.
	if p.checkpoints {
		moves, err := movesOf(ctx, tx, "checkpoint",
			`SELECT name, transaction_id, position FROM `+checkpointsTable+` WHERE transaction_id <> '0' ORDER BY name`,
			`SELECT coalesce(least(
    (SELECT min(position) FROM events WHERE position > $2::bigint),
    (SELECT min(position) FROM events WHERE transaction_id > $1::xid8)) - 1,
    (SELECT coalesce(max(position), 0) FROM events))`)
		if err != nil {
			return fail("map the checkpoints", err)
		}
		r.Moves = append(r.Moves, moves...)
	}
	if p.topic && p.offsets {
		// A NULL offset_acked reads from the group's transaction id on:
		// taken as 0, which reads at least as much.
		moves, err := movesOf(ctx, tx, "consumer group",
			`SELECT consumer_group, last_processed_transaction_id, coalesce(offset_acked, 0) FROM `+topicOffsets+`
WHERE last_processed_transaction_id <> '0' ORDER BY consumer_group`,
			`SELECT coalesce(least(
    (SELECT min("offset") FROM `+topicTable+` WHERE "offset" > $2::bigint),
    (SELECT min("offset") FROM `+topicTable+` WHERE transaction_id > $1::xid8)) - 1,
    (SELECT coalesce(max("offset"), 0) FROM `+topicTable+`))`)
		if err != nil {
			return fail("map the consumer groups", err)
		}
		r.Moves = append(r.Moves, moves...)
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM events WHERE transaction_id <> $1::xid8`, BaselineTransactionID).Scan(&r.Events); err != nil {
		return fail("count the events", err)
	}
	if p.topic {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+topicTable+` WHERE transaction_id <> $1::xid8`, BaselineTransactionID).Scan(&r.Messages); err != nil {
			return fail("count the topic's messages", err)
		}
	}
	if dryRun {
		return r, nil
	}

	if _, err := tx.Exec(ctx, `UPDATE events SET transaction_id = $1::xid8 WHERE transaction_id <> $1::xid8`, BaselineTransactionID); err != nil {
		return fail("rebaseline the events", err)
	}
	if p.topic {
		if _, err := tx.Exec(ctx, `UPDATE `+topicTable+` SET transaction_id = $1::xid8 WHERE transaction_id <> $1::xid8`, BaselineTransactionID); err != nil {
			return fail("rebaseline the topic's messages", err)
		}
	}
	for _, m := range r.Moves {
		var sql string
		if m.Kind == "checkpoint" {
			sql = `UPDATE ` + checkpointsTable + ` SET transaction_id = $2::xid8, position = $3 WHERE name = $1`
		} else {
			sql = `UPDATE ` + topicOffsets + ` SET last_processed_transaction_id = $2::xid8, offset_acked = $3 WHERE consumer_group = $1`
		}
		if _, err := tx.Exec(ctx, sql, m.Name, m.After.TransactionID, m.After.Position); err != nil {
			return fail("move "+m.Kind+" "+m.Name, err)
		}
	}
	after, err := Ahead(ctx, tx)
	if err != nil {
		return RebaselineReport{}, err
	}
	if after.Ahead() {
		return fail("check", fmt.Errorf("still %s", after))
	}
	return r, nil
}

// movesOf reads the places (name, transaction id, position) that list
// selects and gives each the position next computes from the old order
// ($1 the place's transaction id, $2 its position).
func movesOf(ctx context.Context, tx pgx.Tx, kind, list, next string) ([]Move, error) {
	rows, err := tx.Query(ctx, list)
	if err != nil {
		return nil, err
	}
	moves, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Move, error) {
		m := Move{Kind: kind}
		err := row.Scan(&m.Name, &m.Before.TransactionID, &m.Before.Position)
		return m, err
	})
	if err != nil {
		return nil, err
	}
	for i := range moves {
		m := &moves[i]
		m.After.TransactionID = BaselineTransactionID
		if err := tx.QueryRow(ctx, next, m.Before.TransactionID, m.Before.Position).Scan(&m.After.Position); err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, m.Name, err)
		}
	}
	return moves, nil
}

// isLockTimeout reports whether err is PostgreSQL's lock_not_available
// (55P03), which lock_timeout raises.
func isLockTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}
