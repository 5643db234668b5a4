package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
)

// Schemas a rebuild works in: the new table is built in rebuildSchema under
// the live table's name (so its indexes keep their names too), and the old
// one goes through retiredSchema on its way out.
const (
	rebuildSchema = "upsell_rebuild"
	retiredSchema = "upsell_retired"
)

// Progress is told how far a rebuild is: events applied of about total.
type Progress func(done, total int64)

// RebuildBatch is how many events one rebuild transaction applies.
const RebuildBatch = 1000

// Rebuild builds the projection's table anew from the whole log beside the
// live one, while the API keeps serving the live one, then swaps the two in
// one short transaction:
//
//  1. build: create <rebuild schema>.<table> like the live table and apply
//     the log to it in batches (progress is reported after each);
//  2. swap: lock out the live table's writers (an inline projection: the
//     table itself; an asynchronous one: its checkpoint row), apply what was
//     appended since, move the checkpoint, and replace the live table.
//
// Only one rebuild of a projection runs at a time.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, p Projection, progress Progress) error {
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The rebuild lock is a session lock: this connection must not go back
	// to the pool holding it.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, "upsell.rebuild."+p.Name()).Scan(&got); err != nil {
		return fmt.Errorf("rebuild %s: take the rebuild lock: %w", p.Name(), err)
	}
	if !got {
		return fmt.Errorf("rebuild %s: another rebuild of it is running", p.Name())
	}
	var liveSchema string
	if err := conn.QueryRow(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)`, p.Table()).Scan(&liveSchema); err != nil {
		return fmt.Errorf("rebuild %s: find table %s (are the migrations applied?): %w", p.Name(), p.Table(), err)
	}
	live := pgx.Identifier{liveSchema, p.Table()}
	beside := pgx.Identifier{rebuildSchema, p.Table()}
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{rebuildSchema}.Sanitize()+`;
CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{retiredSchema}.Sanitize()+`;
DROP TABLE IF EXISTS `+beside.Sanitize()+`;
CREATE TABLE `+beside.Sanitize()+` (LIKE `+live.Sanitize()+` INCLUDING ALL)`); err != nil {
		return fmt.Errorf("rebuild %s: create %s: %w", p.Name(), beside.Sanitize(), err)
	}
	var total int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&total); err != nil {
		return fmt.Errorf("rebuild %s: count the events: %w", p.Name(), err)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	progress(0, total)

	var at eventstore.Cursor
	var done int64
	for {
		var n int
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			events, next, err := eventstore.ReadLogTx(ctx, tx, at, RebuildBatch)
			if err != nil || len(events) == 0 {
				return err
			}
			if err := p.Apply(ctx, tx, beside, events); err != nil {
				return err
			}
			n, at = len(events), next
			return nil
		})
		if err != nil {
			return fmt.Errorf("rebuild %s: %w", p.Name(), err)
		}
		if n == 0 {
			break
		}
		done += int64(n)
		progress(done, max(total, done))
	}

	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Wait at most this long for the writers to let go; the rebuild can
		// be run again, the API must not stall behind it.
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
			return err
		}
		caught, err := catchUp(ctx, tx, p, live, beside, at)
		if err != nil {
			return err
		}
		done += caught
		_, err = tx.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{retiredSchema, p.Table()}.Sanitize()+`;
ALTER TABLE `+live.Sanitize()+` SET SCHEMA `+pgx.Identifier{retiredSchema}.Sanitize()+`;
ALTER TABLE `+beside.Sanitize()+` SET SCHEMA `+pgx.Identifier{liveSchema}.Sanitize()+`;
DROP TABLE `+pgx.Identifier{retiredSchema, p.Table()}.Sanitize())
		return err
	})
	if err != nil {
		return fmt.Errorf("rebuild %s: swap in the new table: %w", p.Name(), err)
	}
	progress(done, max(total, done))
	return nil
}

// catchUp applies, under a lock that keeps the live table's writers out,
// what was appended since the build read the log, and returns how many
// events that was.
func catchUp(ctx context.Context, tx pgx.Tx, p Projection, live, beside pgx.Identifier, at eventstore.Cursor) (int64, error) {
	read := eventstore.ReadLogTx
	if p.Async() {
		// The projector's batch begins by locking its checkpoint row: hold
		// it, and the projector waits; it then goes on from the cursor set
		// here, in the new table. Reading below the snapshot's xmin, as it
		// does, keeps later commits behind the cursor for it to read.
		if _, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING`, p.Name()); err != nil {
			return 0, err
		}
		if _, err := checkpointTx(ctx, tx, p.Name(), true); err != nil {
			return 0, err
		}
	} else {
		// Inline writers write the table in their append transaction: with
		// the table locked, every event committed so far is visible here,
		// and those still to commit wait for the lock and then write into
		// the new table themselves.
		if _, err := tx.Exec(ctx, `LOCK TABLE `+live.Sanitize()+` IN EXCLUSIVE MODE`); err != nil {
			return 0, err
		}
		read = eventstore.ReadCommittedTx
	}
	var n int64
	for {
		events, next, err := read(ctx, tx, at, RebuildBatch)
		if err != nil {
			return n, err
		}
		if len(events) == 0 {
			break
		}
		if err := p.Apply(ctx, tx, beside, events); err != nil {
			return n, err
		}
		n += int64(len(events))
		at = next
	}
	if p.Async() {
		return n, setCheckpoint(ctx, tx, p.Name(), at)
	}
	return n, nil
}
