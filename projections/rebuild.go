package projections

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// Schemas a rebuild works in: the new table is built in rebuildSchema under
// the live table's name, with the live table's constraint and index names
// (names are per schema), and the old one goes through retiredSchema on its
// way out. After the swap the live table looks exactly as the migrations
// made it.
const (
	rebuildSchema = "upsell_rebuild"
	retiredSchema = "upsell_retired"
)

// Progress is told how far a rebuild is: events applied of about total.
type Progress func(done, total int64)

// RebuildBatch is how many events one rebuild transaction applies.
const RebuildBatch = 1000

// swapLockTimeout bounds how long the swap waits for the live table's
// writers and readers: while it waits, others queue behind it, so it gives
// up quickly and tries again rather than stall the API.
const (
	swapLockTimeout = "2s"
	swapAttempts    = 5
)

// Rebuild builds the projection's table anew from the whole log beside the
// live one, while the API keeps serving the live one, then swaps the two in
// one short transaction:
//
//  1. build: create <rebuild schema>.<table> like the live table (its
//     constraints under their live names, its grants) and apply the log to
//     it in batches, reporting progress after each; then create the live
//     table's other indexes under their names;
//  2. swap: lock out the live table's writers (the checkpoint row of an
//     asynchronous projector first, then the table itself), apply what was
//     appended since, move the checkpoint, and replace the live table.
//
// Only one rebuild of a projection runs at a time.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, p Projection, progress Progress) error {
	if progress == nil {
		progress = func(int64, int64) {}
	}
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
	// Unlock before the connection closes: the server ends a closed
	// session a moment later, and a rebuild run right after this one
	// returns must not find the lock still held.
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, "upsell.rebuild."+p.Name())
	r := &rebuild{pool: pool, conn: conn, p: p, beside: pgx.Identifier{rebuildSchema, p.Table()}}
	_, r.folds = p.(interface{ rows() rowsOf })
	if err := conn.QueryRow(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)`, p.Table()).Scan(&r.liveSchema); err != nil {
		return fmt.Errorf("rebuild %s: find table %s (are the migrations applied?): %w", p.Name(), p.Table(), err)
	}
	r.live = pgx.Identifier{r.liveSchema, p.Table()}
	if err := r.create(ctx); err != nil {
		return fmt.Errorf("rebuild %s: create %s: %w", p.Name(), r.beside.Sanitize(), err)
	}
	// A projection that folds reads the events of its stream type only, so
	// those are what progress counts.
	var ofType *string
	if rp, ok := p.(interface{ rows() rowsOf }); ok {
		t := rp.rows().ofType()
		ofType = &t
	}
	total, stopCount, err := countEvents(ctx, pool, conn, ofType)
	if err != nil {
		return fmt.Errorf("rebuild %s: count the events: %w", p.Name(), err)
	}
	defer stopCount()
	progress(0, total.Load())

	var at eventstore.Cursor
	var done int64
	// follow applies the log after at, one transaction per batch, until
	// it has read all that ReadLog gives now.
	follow := func() error {
		for {
			var n, mine int
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				var err error
				n, mine, at, err = apply(ctx, tx, p, r.beside, eventstore.ReadLogTx, at)
				return err
			})
			if err != nil {
				return fmt.Errorf("rebuild %s: %w", p.Name(), err)
			}
			if n == 0 {
				return nil
			}
			done += int64(mine)
			progress(done, max(total.Load(), done))
		}
	}
	if rp, ok := p.(interface{ rows() rowsOf }); ok {
		// The whole log so far, folded in memory and written with COPY;
		// follow then applies what came after, row by row, advancing the
		// fold's aggregates (see keeper).
		n, next, f, err := r.fold(ctx, rp.rows(), func(n int64) { progress(done+n, max(total.Load(), done+n)) })
		if err != nil {
			return fmt.Errorf("rebuild %s: %w", p.Name(), err)
		}
		done, at = done+n, next
		ctx = context.WithValue(ctx, keeperKey{}, keeper(f)) // follow's and swap's
		if err := r.addConstraints(ctx); err != nil {
			return fmt.Errorf("rebuild %s: constrain %s: %w", p.Name(), r.beside.Sanitize(), err)
		}
	}
	if err := follow(); err != nil {
		return err
	}
	if err := r.createIndexes(ctx); err != nil {
		return fmt.Errorf("rebuild %s: index %s: %w", p.Name(), r.beside.Sanitize(), err)
	}
	// What was appended while the indexes were built is applied before the
	// swap locks the writers out, so that the locked part stays short.
	if err := follow(); err != nil {
		return err
	}

	for attempt := 1; ; attempt++ {
		var caught int64
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var err error
			caught, err = r.swap(ctx, tx, at)
			return err
		})
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55P03" && attempt < swapAttempts { // lock_not_available
			if err := sleep(ctx, time.Duration(attempt)*200*time.Millisecond); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("rebuild %s: swap in the new table: %w", p.Name(), err)
		}
		done += caught
		break
	}
	progress(done, max(total.Load(), done))
	return nil
}

// countAhead is the planner's estimate of events from which a rebuild
// starts before it has counted them.
var countAhead = 100_000.0

// countEvents is how many events a rebuild reads (of one stream type, or
// all), for its progress. Counting them scans the log: up to a second for a
// million events on a small machine, which the rebuild would wait for. So
// for a log the planner estimates at countAhead events or more, the total
// starts as that estimate, and the exact count, made on a connection of the
// pool meanwhile, replaces it when it comes; stop ends the count and waits
// for it. A count that fails leaves the estimate: it is only the
// progress's. A smaller log is counted first.
func countEvents(ctx context.Context, pool *pgxpool.Pool, conn *pgx.Conn, ofType *string) (total *atomic.Int64, stop func(), err error) {
	const where = `FROM events WHERE $1::text IS NULL OR stream_type = $1`
	var plan []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	if err := conn.QueryRow(ctx, `EXPLAIN (FORMAT JSON) SELECT `+where, ofType).Scan(&plan); err != nil {
		return nil, nil, err
	}
	total = new(atomic.Int64)
	if len(plan) == 0 || plan[0].Plan.Rows < countAhead {
		// A small log is counted at once: exact from the first report.
		var n int64
		if err := conn.QueryRow(ctx, `SELECT count(*) `+where, ofType).Scan(&n); err != nil {
			return nil, nil, err
		}
		total.Store(max(n, 1))
		return total, func() {}, nil
	}
	total.Store(int64(plan[0].Plan.Rows))
	countCtx, cancel := context.WithCancel(ctx)
	counted := make(chan struct{})
	go func() {
		defer close(counted)
		var n int64
		if err := pool.QueryRow(countCtx, `SELECT count(*) `+where, ofType).Scan(&n); err == nil {
			total.Store(max(n, 1))
		}
	}()
	return total, func() { cancel(); <-counted }, nil
}

// FoldBatch is how many events a rebuild's fold reads at a time.
const FoldBatch = 20000

// fold reads the log of the projection's stream type up to now, keeps each
// stream's aggregate in memory, and writes one row per stream into the
// table beside with a single COPY. It returns how many events it read, and
// the cursor of the last; progress hears the count after each batch.
//
// The work is a pipeline of three stages (see below), so that PostgreSQL
// and the CPUs here stay busy.
func (r *rebuild) fold(ctx context.Context, rows rowsOf, progress func(int64)) (int64, eventstore.Cursor, folder, error) {
	type batch struct {
		events  []eventstore.Event
		decoded []domain.Event
		next    eventstore.Cursor
		err     error
	}
	// Read in the log's order through its index, whatever the statistics
	// say: a fresh log's planner may prefer to sort it whole each batch.
	// And without JIT: each batch's query is cheap to run and would be
	// compiled anew (a fifth of a second each).
	if _, err := r.conn.Exec(ctx, `SET enable_sort = off; SET jit = off`); err != nil {
		return 0, eventstore.Cursor{}, nil, err
	}
	defer r.conn.Exec(context.WithoutCancel(ctx), `RESET enable_sort; RESET jit`)
	// The rows are written by as many COPYs at once as there are CPUs
	// here, up to two (see copyParts), the others on connections of their
	// own: made now, so that a connection refused fails the rebuild before
	// it reads the log. They are not the pool's, which the caller may have
	// sized for itself.
	copyConns := []*pgx.Conn{r.conn}
	if runtime.GOMAXPROCS(0) > 1 {
		extra, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig)
		if err != nil {
			return 0, eventstore.Cursor{}, nil, fmt.Errorf("connect for the COPY: %w", err)
		}
		defer extra.Close(context.WithoutCancel(ctx))
		copyConns = append(copyConns, extra)
	}
	readCtx, stop := context.WithCancel(ctx)
	defer stop()
	// Three stages, so that PostgreSQL and both CPUs here stay busy: the
	// reader fetches batch n+2 while the decoder decodes batch n+1 on every
	// CPU and this goroutine folds batch n in log order.
	raw := make(chan batch, 1)
	go func() {
		defer close(raw)
		var at eventstore.Cursor
		for {
			events, next, err := eventstore.ReadLogOfTx(readCtx, r.conn, at, FoldBatch, rows.ofType())
			if len(events) == 0 && err == nil {
				return
			}
			select {
			case raw <- batch{events: events, next: next, err: err}:
			case <-readCtx.Done():
				return
			}
			if err != nil {
				return
			}
			at = next
		}
	}()
	ready := make(chan batch, 1)
	go func() {
		defer close(ready)
		for b := range raw {
			if readCtx.Err() != nil {
				continue // drain: the reader ends at its next send
			}
			if b.err == nil {
				b.decoded = make([]domain.Event, len(b.events))
				b.err = decodeAll(b.events, b.decoded)
			}
			select {
			case ready <- b:
			case <-readCtx.Done():
			}
		}
	}()
	// The reader owns the connection until both stages have closed.
	drain := func() {
		stop()
		for range ready {
		}
	}
	var at eventstore.Cursor
	var done int64
	f := rows.fold()
	defer f.discard()
	for b := range ready {
		for i, e := range b.events {
			if b.err != nil {
				break
			}
			b.err = f.add(e, b.decoded[i])
		}
		if b.err != nil {
			drain()
			return done, at, nil, b.err
		}
		done, at = done+int64(len(b.events)), b.next
		progress(done)
	}
	if err := ctx.Err(); err != nil {
		return done, at, nil, err
	}
	if _, err := f.copyParts(ctx, copyConns, r.beside); err != nil {
		return done, at, nil, fmt.Errorf("copy the rows into %s: %w", r.beside.Sanitize(), err)
	}
	return done, at, f, nil
}

// decodeAll decodes events into out[:len(events)], on every CPU.
func decodeAll(events []eventstore.Event, out []domain.Event) error {
	workers := runtime.GOMAXPROCS(0)
	chunk := (len(events) + workers - 1) / workers
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(events))
		if lo >= hi {
			break
		}
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				e := events[i]
				d, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Data)
				if err != nil {
					errs[w] = fmt.Errorf("%s %s version %d: %w", e.StreamType, e.StreamID, e.Version, err)
					return
				}
				out[i] = d
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

type rebuild struct {
	pool           *pgxpool.Pool
	conn           *pgx.Conn
	p              Projection
	folds          bool // p's rows are folded in memory and copied (rowsOf)
	liveSchema     string
	live, beside   pgx.Identifier
	constraintDefs []string // left to addConstraints when folds
	indexDefs      []string
}

// indexOn matches pg_get_indexdef's "CREATE [UNIQUE] INDEX name ON
// [ONLY] table USING ...", to point the same index at another table.
var indexOn = regexp.MustCompile(`^(CREATE (?:UNIQUE )?INDEX \S+ ON )(?:ONLY )?\S+( USING .*)$`)

// create makes the table beside the live one: its columns, defaults and
// checks, its primary key and unique constraints under their live names
// (upserts need them while building; after the fold's COPY when the
// projection folds), and its grants. The other indexes are made after the
// build, when it is cheaper.
func (r *rebuild) create(ctx context.Context) error {
	for _, schema := range []string{rebuildSchema, retiredSchema} {
		// Two rebuilds of different projections may create a schema at
		// once; IF NOT EXISTS does not stop the loser's unique violation.
		_, err := r.conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize())
		var pgErr *pgconn.PgError
		if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P06")) {
			return err
		}
	}
	if _, err := r.conn.Exec(ctx, `DROP TABLE IF EXISTS `+r.beside.Sanitize()+`;
CREATE TABLE `+r.beside.Sanitize()+` (LIKE `+r.live.Sanitize()+` INCLUDING ALL EXCLUDING INDEXES)`); err != nil {
		return err
	}
	var stmts []string
	rows, err := r.conn.Query(ctx, `SELECT format('ALTER TABLE %s ADD CONSTRAINT %I %s', $2::text, conname, pg_get_constraintdef(oid))
FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x') ORDER BY conname`, r.live.Sanitize(), r.beside.Sanitize())
	if err != nil {
		return err
	}
	constraints, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	// A fold writes every row with COPY before anything upserts: its
	// constraints are made after that, an index built from the rows at
	// once being cheaper than one kept up row by row (0.3 s of the server's
	// CPU for 86,000 quotes).
	if r.folds {
		r.constraintDefs = constraints
	} else {
		stmts = append(stmts, constraints...)
	}
	// The live table's owner, storage options and grants: the swap must not
	// take the table away from the role the service runs as.
	rows, err = r.conn.Query(ctx, `SELECT format('ALTER TABLE %s OWNER TO %I', $2::text, pg_get_userbyid(relowner))
FROM pg_class WHERE oid = $1::regclass
UNION ALL
SELECT format('ALTER TABLE %s SET (%s)', $2::text, array_to_string(reloptions, ', '))
FROM pg_class WHERE oid = $1::regclass AND reloptions IS NOT NULL
UNION ALL
SELECT format('GRANT %s ON %s TO %s%s', a.privilege_type, $2::text,
    CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
    CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = $1::regclass AND a.grantee <> c.relowner`, r.live.Sanitize(), r.beside.Sanitize())
	if err != nil {
		return err
	}
	grants, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	stmts = append(stmts, grants...)
	rows, err = r.conn.Query(ctx, `SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
WHERE i.indrelid = $1::regclass AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY i.indexrelid`, r.live.Sanitize())
	if err != nil {
		return err
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, def := range defs {
		m := indexOn.FindStringSubmatch(def)
		if m == nil {
			return fmt.Errorf("cannot read the index definition %q", def)
		}
		r.indexDefs = append(r.indexDefs, m[1]+r.beside.Sanitize()+m[2])
	}
	for _, stmt := range stmts {
		if _, err := r.conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}

// addConstraints makes the constraints create left for after the fold.
func (r *rebuild) addConstraints(ctx context.Context) error {
	for _, def := range r.constraintDefs {
		if _, err := r.conn.Exec(ctx, def); err != nil {
			return fmt.Errorf("%s: %w", def, err)
		}
	}
	return nil
}

func (r *rebuild) createIndexes(ctx context.Context) error {
	for _, def := range r.indexDefs {
		if _, err := r.conn.Exec(ctx, def); err != nil {
			return fmt.Errorf("%s: %w", def, err)
		}
	}
	return nil
}

// swap applies, with the live table's writers locked out, what was appended
// since the build read the log, then replaces the live table; it returns
// how many events it applied.
func (r *rebuild) swap(ctx context.Context, tx pgx.Tx, at eventstore.Cursor) (int64, error) {
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+swapLockTimeout+`'`); err != nil {
		return 0, err
	}
	name := r.p.Name()
	if r.p.Async() {
		// The projector's batch begins by locking its checkpoint row, then
		// writes the table: take the locks in the same order, and it waits
		// here; it goes on from the cursor set below, in the new table.
		if _, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING`, name); err != nil {
			return 0, err
		}
		if _, err := checkpointTx(ctx, tx, name, true); err != nil {
			return 0, err
		}
	}
	// Inline writers write the table in their append transaction: with the
	// table locked, every event committed so far is visible here, and those
	// still to commit wait for the lock and then write into the new table
	// themselves. Readers go on reading the live table until the swap.
	if _, err := tx.Exec(ctx, `LOCK TABLE `+r.live.Sanitize()+` IN EXCLUSIVE MODE`); err != nil {
		return 0, err
	}
	var applied int64
	if r.p.Async() {
		// The checkpoint may only move as far as ReadLog reads: below the
		// oldest transaction still open, so that nothing commits behind it.
		n, next, err := drain(ctx, tx, r.p, r.beside, eventstore.ReadLogTx, at)
		if err != nil {
			return applied, err
		}
		applied, at = n, next
		if err := setCheckpoint(ctx, tx, name, at); err != nil {
			return applied, err
		}
	}
	// Then everything committed: rows must not go back in time at the swap.
	// An asynchronous projector applies these again later; its upserts
	// leave a row that is already at that version as it is.
	n, _, err := drain(ctx, tx, r.p, r.beside, eventstore.ReadCommittedTx, at)
	applied += n
	if err != nil {
		return applied, err
	}
	retired := pgx.Identifier{retiredSchema, r.p.Table()}
	_, err = tx.Exec(ctx, `DROP TABLE IF EXISTS `+retired.Sanitize()+`;
ALTER TABLE `+r.live.Sanitize()+` SET SCHEMA `+pgx.Identifier{retiredSchema}.Sanitize()+`;
ALTER TABLE `+r.beside.Sanitize()+` SET SCHEMA `+pgx.Identifier{r.liveSchema}.Sanitize()+`;
DROP TABLE `+retired.Sanitize())
	return applied, err
}

// reader reads the log after a cursor: eventstore.ReadLogTx or
// ReadCommittedTx.
type reader func(context.Context, eventstore.DBTX, eventstore.Cursor, int) ([]eventstore.Event, eventstore.Cursor, error)

// drain applies to table, within tx, every event read gives after the
// cursor; it returns how many of them were the projection's (see counted)
// and the cursor of the last.
func drain(ctx context.Context, tx pgx.Tx, p Projection, table pgx.Identifier, read reader, at eventstore.Cursor) (int64, eventstore.Cursor, error) {
	var applied int64
	for {
		n, mine, next, err := apply(ctx, tx, p, table, read, at)
		if err != nil || n == 0 {
			return applied, at, err
		}
		applied, at = applied+int64(mine), next
	}
}

// apply reads the next batch after the cursor with read and applies it to
// table; it returns how many events it read, how many of them count for
// the projection's progress, and the new cursor.
func apply(ctx context.Context, tx pgx.Tx, p Projection, table pgx.Identifier, read reader,
	at eventstore.Cursor) (int, int, eventstore.Cursor, error) {
	events, next, err := read(ctx, tx, at, RebuildBatch)
	if err != nil || len(events) == 0 {
		return 0, 0, at, err
	}
	if err := p.Apply(ctx, tx, table, events); err != nil {
		return 0, 0, at, err
	}
	return len(events), counted(p, events), next, nil
}

// counted is how many of the events a rebuild's progress counts: those of
// the projection's stream type when it folds (its total counts only
// those), else all.
func counted(p Projection, events []eventstore.Event) int {
	rp, ok := p.(interface{ rows() rowsOf })
	if !ok {
		return len(events)
	}
	n := 0
	for _, e := range events {
		if e.StreamType == rp.rows().ofType() {
			n++
		}
	}
	return n
}
