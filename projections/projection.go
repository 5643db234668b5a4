package projections

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// Projection turns events into the rows of one read-model table.
type Projection interface {
	// Name is how operators name it (upsell rebuild NAME) and the key of
	// its checkpoint and lock.
	Name() string
	// Table is the live table it writes.
	Table() string
	// Async reports whether a Runner follows the log for this projection
	// (true), or only the append transaction writes it (false).
	Async() bool
	// Apply writes the rows that the events lead to into table (the live
	// one, or one being rebuilt beside it), inside tx. Events of streams
	// the projection does not follow are ignored. Applying events already
	// applied leaves the rows as they are.
	Apply(ctx context.Context, tx pgx.Tx, table pgx.Identifier, events []eventstore.Event) error
}

// All is every projection, in the order rebuild runs them.
func All() []Projection { return []Projection{Quotes{}, Customers{}} }

// ByName finds a projection; the error lists the known names.
func ByName(name string) (Projection, error) {
	var names []string
	for _, p := range All() {
		if p.Name() == name {
			return p, nil
		}
		names = append(names, p.Name())
	}
	return nil, fmt.Errorf("unknown projection %q: known are %v", name, names)
}

// streamEvents is the events of one stream within a batch, in version order.
type streamEvents struct {
	id     string
	events []eventstore.Event
}

// byStream groups the events of streams of one type, in the order each
// stream first appears.
func byStream(events []eventstore.Event, streamType string) []*streamEvents {
	var out []*streamEvents
	index := map[string]*streamEvents{}
	for _, e := range events {
		if e.StreamType != streamType {
			continue
		}
		s, ok := index[e.StreamID]
		if !ok {
			s = &streamEvents{id: e.StreamID}
			index[e.StreamID] = s
			out = append(out, s)
		}
		s.events = append(s.events, e)
	}
	return out
}

// history returns the stream's events from version 1 up to the last one in
// the batch, decoded: from the batch alone when it starts the stream, else
// read in tx (which sees the events it appended itself).
func (s *streamEvents) history(ctx context.Context, tx pgx.Tx) ([]domain.Event, error) {
	stored := s.events
	last := stored[len(stored)-1]
	if stored[0].Version != 1 {
		var err error
		stored, err = eventstore.LoadTx(ctx, tx, s.id, eventstore.LoadOptions{UpToVersion: last.Version})
		if err != nil {
			return nil, err
		}
	}
	if int64(len(stored)) != last.Version {
		return nil, fmt.Errorf("stream %s: %d events up to version %d", s.id, len(stored), last.Version)
	}
	return app.DecodeEvents(stored)
}

// aggregate is what the projections read their rows from.
type aggregate interface {
	*domain.ChangeQuote | *domain.Customer
	Version() int64
}

// stateOf returns the aggregate as the stream's last event in the batch
// leaves it. In a command's append transaction that is the command's own
// aggregate (app.After), so nothing is read or decoded. In a rebuild's
// catch-up it is the aggregate its fold left (a keeper in ctx), advanced
// by the batch's events when it stands just before them. Otherwise the
// stream's history is replayed (see history), and a keeper keeps the
// result for the next batch.
func stateOf[A aggregate](ctx context.Context, tx pgx.Tx, s *streamEvents, replay func(A, []domain.Event) (A, error)) (A, error) {
	last := s.events[len(s.events)-1]
	if a, ok := app.After(ctx, s.id).(A); ok && a != nil && a.Version() == last.Version {
		return a, nil
	}
	var zero A
	k, _ := ctx.Value(keeperKey{}).(keeper)
	if k != nil {
		// Taken out while it changes: should replaying fail, or the
		// batch's transaction roll back, no half-advanced aggregate is
		// left for a later batch under its old version.
		if kept, version, ok := k.take(s.id); ok {
			if a, ok := kept.(A); ok && a != nil && version == s.events[0].Version-1 {
				history, err := app.DecodeEvents(s.events)
				if err != nil {
					return zero, err
				}
				if a, err = replay(a, history); err != nil {
					return zero, err
				}
				k.keep(s.id, a, last.Version)
				return a, nil
			}
		}
	}
	history, err := s.history(ctx, tx)
	if err != nil {
		return zero, err
	}
	a, err := replay(zero, history)
	if err == nil && k != nil {
		k.keep(s.id, a, last.Version)
	}
	return a, err
}

// keeperKey carries a keeper in a rebuild's catch-up.
type keeperKey struct{}

// keeper holds the aggregates a rebuild's fold left, by stream, so that
// its catch-up (which applies what was appended during the fold, a batch
// at a time) advances each stream from where the fold left it instead of
// loading and replaying its whole history for every batch: a stream that
// writers keep growing during a rebuild would make that quadratic.
type keeper interface {
	// take removes and returns the stream's aggregate and its version.
	take(id string) (agg any, version int64, ok bool)
	// keep stores the stream's aggregate at version.
	keep(id string, agg any, version int64)
}

func (f *fold[A]) take(id string) (any, int64, bool) {
	s := f.streams[id]
	if s == nil {
		return nil, 0, false
	}
	delete(f.streams, id)
	return s.agg, s.version, true
}

func (f *fold[A]) keep(id string, agg any, version int64) {
	if a, ok := agg.(A); ok {
		f.streams[id] = &folded[A]{id: id, agg: a, version: version}
	}
}

// streamRows is a read model with one row per stream of a type, a function
// of the stream's aggregate and its last event. Apply upserts the rows of
// the streams a batch touched; a rebuild folds the whole log in memory
// instead and writes every row with one COPY (see fold).
type streamRows[A aggregate] struct {
	streamType string
	columns    []string // the row's columns, in the order row gives them
	types      []string // their SQL types, for the arrays of mergedUpsert
	key        string   // the column that identifies a stream's row
	replay     func(A, []domain.Event) (A, error)
	// rowInto makes the stream's row, appending the bytes of its JSON
	// columns to *buf, which a rebuild reuses for many rows (the row's
	// values refer to them); row is rowInto with a buffer of its own.
	rowInto func(buf *[]byte, agg A, last eventstore.Event) ([]any, error)
	row     func(agg A, last eventstore.Event) ([]any, error)
	// closed, when set, tells a stream that takes no more events: a
	// rebuild's fold makes its row at once and lets its aggregate go.
	closed func(A) bool
}

// withRow sets r.row from r.rowInto.
func withRow[A aggregate](r *streamRows[A]) *streamRows[A] {
	r.row = func(agg A, last eventstore.Event) ([]any, error) {
		var buf []byte
		return r.rowInto(&buf, agg, last)
	}
	return r
}

// upsertSQL writes a row unless the table holds the stream at that version
// or a later one already: applying an event twice changes nothing.
func (r *streamRows[A]) upsertSQL(table pgx.Identifier) string { return r.upsert(table, "").sql }

// upsert is an upsert statement of r's rows into table, and which value of
// a row (skip, -1 for none) it leaves out: the nowColumn's, which it sets
// to now() (the appending transaction's time, an event's recorded_at).
type upsert struct {
	sql  string
	skip int
}

func (r *streamRows[A]) upsert(table pgx.Identifier, nowColumn string) upsert {
	u := upsert{skip: -1}
	var cols, values, set strings.Builder
	n := 0
	for i, c := range r.columns {
		if i > 0 {
			cols.WriteString(", ")
			values.WriteString(", ")
		}
		cols.WriteString(c)
		if c == nowColumn {
			u.skip = i
			values.WriteString("now()")
		} else {
			n++
			fmt.Fprintf(&values, "$%d", n)
		}
		if c != r.key {
			if set.Len() > 0 {
				set.WriteString(", ")
			}
			fmt.Fprintf(&set, "%s = EXCLUDED.%s", c, c)
		}
	}
	u.sql = `INSERT INTO ` + table.Sanitize() + ` AS v (` + cols.String() + `)
VALUES (` + values.String() + `)
ON CONFLICT (` + r.key + `) DO UPDATE SET ` + set.String() + `
WHERE v.version < EXCLUDED.version`
	return u
}

// mergedUpsert is upsert for the rows of several streams at once, each
// parameter the array of the rows' values of upsert's parameter with the
// same number (eventstore.WithMerged): the rows of one group commit's
// commands, one statement. Its streams must differ (a group never holds
// two calls on one stream).
func (r *streamRows[A]) mergedUpsert(table pgx.Identifier, nowColumn string) string {
	var cols, params, names, values, set strings.Builder
	n := 0
	for i, c := range r.columns {
		if i > 0 {
			cols.WriteString(", ")
			values.WriteString(", ")
		}
		cols.WriteString(c)
		if c == nowColumn {
			values.WriteString("now()")
		} else {
			if n > 0 {
				params.WriteString(", ")
				names.WriteString(", ")
			}
			n++
			fmt.Fprintf(&params, "$%d::%s[]", n, r.types[i])
			names.WriteString(c)
			values.WriteString("u." + c)
		}
		if c != r.key {
			if set.Len() > 0 {
				set.WriteString(", ")
			}
			fmt.Fprintf(&set, "%s = EXCLUDED.%s", c, c)
		}
	}
	return `INSERT INTO ` + table.Sanitize() + ` AS v (` + cols.String() + `)
SELECT ` + values.String() + `
FROM unnest(` + params.String() + `) AS u(` + names.String() + `)
ON CONFLICT (` + r.key + `) DO UPDATE SET ` + set.String() + `
WHERE v.version < EXCLUDED.version`
}

func (r *streamRows[A]) apply(ctx context.Context, tx pgx.Tx, table pgx.Identifier, events []eventstore.Event) error {
	b := &pgx.Batch{}
	sql := r.upsertSQL(table)
	for _, s := range byStream(events, r.streamType) {
		agg, err := stateOf(ctx, tx, s, r.replay)
		if err != nil {
			return fmt.Errorf("project %s %s: %w", r.streamType, s.id, err)
		}
		row, err := r.row(agg, s.events[len(s.events)-1])
		if err != nil {
			return fmt.Errorf("project %s %s: %w", r.streamType, s.id, err)
		}
		b.Queue(sql, row...)
	}
	if err := upsertAll(ctx, tx, b); err != nil {
		return fmt.Errorf("project %s streams into %s: %w", r.streamType, table.Sanitize(), err)
	}
	return nil
}

// rowsOf is a projection whose rows a rebuild can fold (Quotes, Customers).
type rowsOf interface {
	ofType() string
	fold() folder
}

// folder takes a stream type's events in log order and keeps every
// stream's aggregate in memory; copy then writes one row per stream.
type folder interface {
	// add applies the next event of its stream, decoded as d.
	add(e eventstore.Event, d domain.Event) error
	// copyParts writes one row per stream into table, over the connections
	// (see rebuild_copy.go).
	copyParts(ctx context.Context, conns []*pgx.Conn, table pgx.Identifier) (int64, error)
	// discard lets the fold's helpers go when it ends without its COPY
	// (an error, a cancellation); after the COPY it does nothing.
	discard()
	// The catch-up after the copy advances the streams (see keeper).
	keeper
}

func (r *streamRows[A]) ofType() string { return r.streamType }

func (r *streamRows[A]) fold() folder {
	return &fold[A]{rows: r, streams: map[string]*folded[A]{}}
}

// folded is a stream as the events so far left it.
type folded[A aggregate] struct {
	id      string
	agg     A
	version int64
	at      time.Time
	// row is the stream's row, made once it closed (see earlyRows); agg is
	// then let go. handed: it went to be made; reopened: an event came
	// after it closed (which the domain never appends), so its aggregate
	// is made again from its history before the COPY.
	row              []any
	handed, reopened bool
}

type fold[A aggregate] struct {
	rows     *streamRows[A]
	streams  map[string]*folded[A]
	order    []*folded[A] // in the order the streams began, for a stable COPY
	one      [1]domain.Event
	early    *earlyRows[A]
	reopened []*folded[A]
}

// add applies the next event of its stream. The log gives a stream's events
// in version order (the append's guard); a gap is corruption and an error.
func (f *fold[A]) add(e eventstore.Event, d domain.Event) error {
	s := f.streams[e.StreamID]
	if s == nil {
		s = &folded[A]{id: e.StreamID}
		f.streams[e.StreamID] = s
		f.order = append(f.order, s)
	}
	if e.Version != s.version+1 {
		return fmt.Errorf("%s %s: version %d follows version %d in the log", e.StreamType, e.StreamID, e.Version, s.version)
	}
	if s.handed {
		if !s.reopened {
			s.reopened = true
			f.reopened = append(f.reopened, s)
		}
		s.version, s.at = e.Version, e.RecordedAt
		return nil
	}
	f.one[0] = d
	var err error
	if s.agg, err = f.rows.replay(s.agg, f.one[:]); err != nil {
		return fmt.Errorf("%s %s version %d: %w", e.StreamType, e.StreamID, e.Version, err)
	}
	s.version, s.at = e.Version, e.RecordedAt
	if f.rows.closed != nil && f.rows.closed(s.agg) {
		if f.early == nil {
			f.early = startEarlyRows(f.rows)
		}
		s.handed = true
		f.early.hand(s)
	}
	return nil
}

// earlyRows makes the rows of closed streams while the fold goes on, on
// every CPU, and lets their aggregates go: a rebuild then holds a row (its
// JSON in large shared buffers, nothing for the garbage collector to
// trace) instead of an aggregate (some KB of small objects) for every
// closed stream, and half the quotes of a typical log are closed.
type earlyRows[A aggregate] struct {
	in chan closedStream[A]
	wg sync.WaitGroup
}

// closedStream is what a row is made of: the fold goes on writing the
// folded's version and time should the stream reopen.
type closedStream[A aggregate] struct {
	s       *folded[A]
	agg     A
	version int64
	at      time.Time
}

func startEarlyRows[A aggregate](rows *streamRows[A]) *earlyRows[A] {
	r := &earlyRows[A]{in: make(chan closedStream[A], 1024)}
	for range runtime.GOMAXPROCS(0) {
		r.wg.Go(func() {
			var buf []byte
			for c := range r.in {
				if cap(buf)-len(buf) < 64<<10 {
					buf = make([]byte, 0, 1<<20)
				}
				// A failure leaves the aggregate: the COPY makes the row
				// again, and fails with it.
				if row, err := rows.rowInto(&buf, c.agg, eventstore.Event{StreamID: c.s.id, Version: c.version, RecordedAt: c.at}); err == nil {
					var none A
					c.s.row, c.s.agg = row, none
				}
			}
		})
	}
	return r
}

func (r *earlyRows[A]) hand(s *folded[A]) {
	r.in <- closedStream[A]{s: s, agg: s.agg, version: s.version, at: s.at}
}

func (f *fold[A]) discard() {
	if f.early != nil {
		close(f.early.in)
		f.early = nil
	}
}

// finish waits for the early rows, and makes the aggregates of streams that
// reopened again from their history, up to the version the fold reached.
func (f *fold[A]) finish(ctx context.Context, db eventstore.DBTX) error {
	if f.early == nil {
		return nil
	}
	close(f.early.in)
	f.early.wg.Wait()
	f.early = nil
	for _, s := range f.reopened {
		events, err := eventstore.LoadTx(ctx, db, s.id, eventstore.LoadOptions{UpToVersion: s.version})
		if err != nil {
			return fmt.Errorf("load %s %s: %w", f.rows.streamType, s.id, err)
		}
		history, err := app.DecodeEvents(events)
		if err != nil {
			return fmt.Errorf("%s %s: %w", f.rows.streamType, s.id, err)
		}
		var zero A
		if s.agg, err = f.rows.replay(zero, history); err != nil {
			return fmt.Errorf("%s %s: %w", f.rows.streamType, s.id, err)
		}
		s.row, s.handed, s.reopened = nil, false, false
	}
	f.reopened = nil
	return nil
}

// copy writes one row per stream into table. The rows (their JSON above
// all) are made on every CPU, a chunk of streams at a time and a few chunks
// ahead of the COPY, which takes them in order.
func (f *fold[A]) copy(ctx context.Context, conn *pgx.Conn, table pgx.Identifier) (int64, error) {
	const chunkSize = 1000
	type chunk struct {
		rows [][]any
		err  error
	}
	chunks := make([]chan chunk, (len(f.order)+chunkSize-1)/chunkSize)
	for i := range chunks {
		chunks[i] = make(chan chunk, 1)
	}
	ahead := make(chan struct{}, 2*runtime.GOMAXPROCS(0)) // chunks made but not yet copied
	done := make(chan struct{})
	defer close(done)
	go func() {
		for i := range chunks {
			select {
			case ahead <- struct{}{}:
			case <-done:
				return
			}
			go func() {
				streams := f.order[i*chunkSize : min((i+1)*chunkSize, len(f.order))]
				c := chunk{rows: make([][]any, len(streams))}
				// The chunk's JSON goes into one buffer: a few
				// allocations per chunk instead of some per row.
				buf := make([]byte, 0, 512<<10)
				for j, s := range streams {
					if s.row != nil {
						c.rows[j] = s.row
						continue
					}
					if c.rows[j], c.err = f.rows.rowInto(&buf, s.agg, eventstore.Event{StreamID: s.id, Version: s.version, RecordedAt: s.at}); c.err != nil {
						c.err = fmt.Errorf("project %s %s: %w", f.rows.streamType, s.id, c.err)
						break
					}
				}
				chunks[i] <- c
			}()
		}
	}()
	var current [][]any
	next := 0
	return conn.CopyFrom(ctx, table, f.rows.columns, pgx.CopyFromFunc(func() ([]any, error) {
		for len(current) == 0 {
			if next == len(chunks) {
				return nil, nil
			}
			c := <-chunks[next]
			<-ahead
			next++
			if c.err != nil {
				return nil, c.err
			}
			current = c.rows
		}
		row := current[0]
		current = current[1:]
		return row, nil
	}))
}

// upsertAll runs one version-guarded upsert per stream in one round trip.
func upsertAll(ctx context.Context, tx pgx.Tx, b *pgx.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}
