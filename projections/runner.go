package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
)

// Runner keeps one projection's live table current from the log. Start one
// per projection on every instance: one leads, the others wait to take over.
type Runner struct {
	pool *pgxpool.Pool
	proj Projection
	log  *slog.Logger
	// BatchSize is how many events one transaction applies (default 500).
	BatchSize int
	// Poll is how long the leader waits when the log has nothing new, and
	// how often a standby tries to lead (default 100 ms).
	Poll time.Duration
	// OnBatch, when set, is told how many events each committed batch
	// applied (for metrics).
	OnBatch func(n int)
	// CallTimeout bounds each piece of work with the database: getting a
	// connection, one try for the lock, one batch (default
	// DefaultCallTimeout). A connection that stops answering without being
	// closed (a network partition, a failover behind a proxy) then ends the
	// leadership and is replaced, instead of holding the projector forever.
	CallTimeout time.Duration
	// rebuildable: a rebuild may swap the projection's table (it is one of
	// All), so a batch locks its checkpoint row.
	rebuildable bool
}

// DefaultCallTimeout is a Runner's CallTimeout unless set: far above what a
// batch takes (milliseconds), far below TCP's own give-up (about 15
// minutes for unacknowledged data, never for a peer that acknowledges but
// does not answer).
const DefaultCallTimeout = 30 * time.Second

// NewRunner returns a Runner of proj on pool.
func NewRunner(pool *pgxpool.Pool, proj Projection, log *slog.Logger) *Runner {
	_, notRebuilt := ByName(proj.Name())
	return &Runner{pool: pool, proj: proj, log: log.With("projection", proj.Name()), BatchSize: 500, Poll: 100 * time.Millisecond,
		CallTimeout: DefaultCallTimeout, rebuildable: notRebuilt == nil}
}

func (r *Runner) callTimeout() time.Duration {
	if r.CallTimeout <= 0 {
		return DefaultCallTimeout
	}
	return r.CallTimeout
}

// bounded is ctx limited to one piece of work with the database.
func (r *Runner) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.callTimeout())
}

// Run follows the log until ctx ends; it returns nil then. Failures (a lost
// connection, a database restart) are logged and retried.
func (r *Runner) Run(ctx context.Context) error {
	for {
		err := r.lead(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Error("projector stopped; starting again", "err", err)
		if sleep(ctx, time.Second) != nil {
			return nil
		}
	}
}

// lockKey is the session advisory lock key that one leader holds.
func lockKey(name string) string { return "upsell.projection." + name }

// lead takes a connection out of the pool (so that its session lock never
// goes back to the pool with it), waits until it holds the projection's
// lock, then applies batches on that connection until ctx ends or the
// connection fails, which also releases the lock for a standby.
func (r *Runner) lead(ctx context.Context) error {
	acquireCtx, cancel := r.bounded(ctx)
	pc, err := r.pool.Acquire(acquireCtx)
	cancel()
	if err != nil {
		return err
	}
	conn := pc.Hijack()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	for waited := false; ; waited = true {
		var got bool
		lockCtx, cancel := r.bounded(ctx)
		err := conn.QueryRow(lockCtx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, lockKey(r.proj.Name())).Scan(&got)
		cancel()
		if err != nil {
			return fmt.Errorf("take the projector lock: %w", err)
		}
		if got {
			if waited {
				r.log.Info("projector took over")
			}
			break
		}
		if !waited {
			r.log.Info("projector standing by: another instance leads")
		}
		if err := sleep(ctx, r.Poll); err != nil {
			return err
		}
	}
	createCtx, cancel := r.bounded(ctx)
	_, err = conn.Exec(createCtx, `INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING`, r.proj.Name())
	cancel()
	if err != nil {
		return fmt.Errorf("create the checkpoint: %w", err)
	}
	for {
		stepCtx, cancel := r.bounded(ctx)
		n, err := r.step(stepCtx, conn)
		cancel()
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("a batch got no answer from the database in time (at most %s); leaving its connection: %w", r.callTimeout(), err)
			}
			return err
		}
		if n < r.BatchSize {
			if err := sleep(ctx, r.Poll); err != nil {
				return err
			}
		}
	}
}

// step applies the next batch and moves the checkpoint, in one transaction.
func (r *Runner) step(ctx context.Context, conn *pgx.Conn) (int, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() {
		// Bounded too: the connection may be the one that stopped answering.
		rollbackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rollbackCtx)
	}()
	// FOR UPDATE: a rebuild that swaps the table moves the checkpoint under
	// this row's lock, so a batch never straddles a swap. Only for a read
	// model a rebuild can swap: the lock gives the transaction an id at
	// once, and every reader of the log waits for it until it ends. The
	// relay, which publishes in its batch and which no rebuild swaps, takes
	// an id only when it writes its checkpoint, at the end; its session's
	// advisory lock already keeps others off that row.
	at, err := checkpointTx(ctx, tx, r.proj.Name(), r.rebuildable)
	if err != nil {
		return 0, err
	}
	events, next, err := eventstore.ReadLogTx(ctx, tx, at, r.BatchSize)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	if err := r.proj.Apply(ctx, tx, pgx.Identifier{r.proj.Table()}, events); err != nil {
		return 0, err
	}
	if err := setCheckpoint(ctx, tx, r.proj.Name(), next); err != nil {
		return 0, err
	}
	// Stopping must not interrupt the commit's reply: the batch would be
	// committed and not counted.
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := tx.Commit(commitCtx); err != nil {
		return 0, err
	}
	if r.OnBatch != nil {
		r.OnBatch(len(events))
	}
	return len(events), nil
}

func checkpointTx(ctx context.Context, db eventstore.DBTX, name string, forUpdate bool) (eventstore.Cursor, error) {
	sql := `SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	var c eventstore.Cursor
	err := db.QueryRow(ctx, sql, name).Scan(&c.TransactionID, &c.Position)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Cursor{}, nil
	}
	if err != nil {
		return c, fmt.Errorf("read the checkpoint of %s: %w", name, err)
	}
	return c, nil
}

func setCheckpoint(ctx context.Context, db eventstore.DBTX, name string, c eventstore.Cursor) error {
	_, err := db.Exec(ctx, `INSERT INTO projection_checkpoints (name, transaction_id, position, updated_at)
VALUES ($1, $2::xid8, $3, now())
ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id,
    position = EXCLUDED.position, updated_at = EXCLUDED.updated_at`, name, c.TransactionID, c.Position)
	if err != nil {
		return fmt.Errorf("move the checkpoint of %s to %s: %w", name, c, err)
	}
	return nil
}

// Checkpoint returns where an asynchronous projection is in the log.
func Checkpoint(ctx context.Context, db eventstore.DBTX, name string) (eventstore.Cursor, error) {
	return checkpointTx(ctx, db, name, false)
}

// WaitFor waits until the named projection has applied the event at c, or
// ctx ends.
func WaitFor(ctx context.Context, db eventstore.DBTX, name string, c eventstore.Cursor) error {
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		at, err := Checkpoint(ctx, db, name)
		if err != nil {
			return err
		}
		if !at.Less(c) {
			return nil
		}
		if err := sleep(ctx, delay); err != nil {
			return fmt.Errorf("projection %s is at %s, not yet at %s: %w", name, at, c, err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// LagReport is how far a projection is behind the log.
type LagReport struct {
	Events int64         // events not applied yet (counted up to a million)
	Age    time.Duration // age of the oldest of them; 0 when current
}

// Lag measures how far the named asynchronous projection is behind.
func Lag(ctx context.Context, db eventstore.DBTX, name string) (LagReport, error) {
	at, err := Checkpoint(ctx, db, name)
	if err != nil {
		return LagReport{}, err
	}
	var r LagReport
	var ageSeconds float64
	err = db.QueryRow(ctx, `SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(recorded_at)), 0)::float8
FROM (SELECT recorded_at FROM events WHERE (transaction_id, position) > ($1::xid8, $2::bigint) LIMIT 1000000) behind`,
		at.TransactionID, at.Position).Scan(&r.Events, &ageSeconds)
	if err != nil {
		return r, fmt.Errorf("measure the lag of %s: %w", name, err)
	}
	r.Age = time.Duration(ageSeconds * float64(time.Second))
	return r, nil
}
