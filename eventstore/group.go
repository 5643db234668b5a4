package eventstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Group commit: AppendCommit calls made while others are on their way to
// the database share one transaction, one round trip and one COMMIT. A
// command's cost in PostgreSQL is much more than its inserts: the
// transaction's start and commit, a backend woken for each message and the
// system calls on both sides. Together, concurrent commands pay those once.
//
// At most maxInFlight groups are in flight at once; a call that finds all
// of them busy waits in a queue, and the next group takes what waits (at
// most maxGroup calls, never two on one stream). A call that finds a free
// slot goes at once, alone if nothing waits: grouping adds no wait to a
// quiet store. Within a group, the streams that get one event each (most
// commands) share one insert statement (groupAppendSQL): PostgreSQL then
// starts one insert, opens the indexes once and ends it once for them all.
//
// A group's members must not depend on each other's results, and they
// commit all or none. When PostgreSQL refuses any statement of a group (a
// version conflict, a failed guard, a unique key), nothing of it commits,
// and every member is then run alone, as if it had never been grouped: each
// gets the outcome it would have had. An error of another kind (a lost
// connection, a timeout) may come after the COMMIT took effect, so it is
// every member's answer, as it would be for a call alone.

// DefaultGroupSize is WithGroupCommit's size when it is given none. A
// store made with New groups nothing unless WithGroupCommit says so.
const DefaultGroupSize = 16

// Option configures a Store.
type Option func(*Store)

// WithGroupCommit lets AppendCommit group concurrent calls: at most
// inFlight groups at once (0: no grouping, every call is its own
// transaction), each of at most size calls (below 1: DefaultGroupSize).
func WithGroupCommit(inFlight, size int) Option {
	return func(s *Store) {
		if inFlight <= 0 {
			s.group = nil
			return
		}
		if size < 1 {
			size = DefaultGroupSize
		}
		s.group = &committer{store: s, maxInFlight: inFlight, maxGroup: size}
	}
}

// OnGroup has observe told of every transaction a grouping store's queue
// sends for AppendCommit: how many calls it carried (1: a call alone), and
// whether PostgreSQL refused it, its members then running alone (their own
// transactions are not told again) (for metrics). It is told before the
// members hear their outcome. It must be quick and safe for concurrent
// use.
func OnGroup(observe func(members int, refused bool)) Option {
	return func(s *Store) { s.onGroup = observe }
}

// WithMerged lets a group commit send the statements that its members
// queued with the text single as one statement, merged, instead of one
// each: PostgreSQL then starts, runs and ends one statement for the group.
// merged takes as its parameter n the array of the members' values of
// single's parameter n, in the members' order, e.g. through unnest; it
// must do what the statements would do one after the other. A group sends
// merged where two calls or more queued single with as many arguments; a
// statement of a call alone goes as queued. Merged statements go where the
// group's first single would have gone, so a statement must not depend on
// another call's.
func WithMerged(single, merged string) Option {
	return func(s *Store) {
		if s.merged == nil {
			s.merged = make(map[string]string)
		}
		s.merged[single] = merged
	}
}

// commit is one AppendCommit call: its streams, and what with queued.
type commit struct {
	ctx     context.Context
	streams []*pending
	with    *pgx.Batch
	events  []Event
	err     error
	alone   bool          // run it alone: its group was refused
	done    chan struct{} // closed once events, err or alone is set
	lead    chan struct{} // the caller is to lead (capacity 1)
	led     bool          // lead was sent (guarded by committer.mu)
}

// committer is the queue of calls waiting for a group.
type committer struct {
	store       *Store
	maxInFlight int
	maxGroup    int

	mu       sync.Mutex
	inFlight int // callers leading a group or about to
	queue    []*commit
}

// run carries c out, in a group when others wait.
func (g *committer) run(c *commit) ([]Event, error) {
	g.mu.Lock()
	g.queue = append(g.queue, c)
	lead := g.inFlight < g.maxInFlight
	if lead {
		g.inFlight++
	}
	g.mu.Unlock()
	if !lead {
		lead = g.wait(c)
	}
	if lead {
		g.leadUntil(c)
	}
	return c.result()
}

// wait waits until c is done or its caller is to lead, and says whether it
// leads. A call whose context ends while it waits leaves the queue with the
// context's error; once in a group, it waits for the group's outcome.
func (g *committer) wait(c *commit) (lead bool) {
	select {
	case <-c.done:
		return c.ledToo()
	case <-c.lead:
		return true
	case <-c.ctx.Done():
	}
	g.mu.Lock()
	for i, q := range g.queue {
		if q != c {
			continue
		}
		g.queue = append(g.queue[:i], g.queue[i+1:]...)
		if c.ledToo() { // the lead came with the cancellation: pass it on
			g.handOver()
		}
		g.mu.Unlock()
		c.finish(nil, fmt.Errorf("eventstore: append: %w", c.ctx.Err()))
		return false
	}
	g.mu.Unlock()
	select { // in a group already: its outcome is on its way
	case <-c.done:
		return c.ledToo()
	case <-c.lead:
		return true
	}
}

// leadUntil sends groups from the queue until c has its outcome or is in
// a group on its way, then hands the lead on.
func (g *committer) leadUntil(c *commit) {
	for {
		g.mu.Lock()
		var group []*commit
		if !c.isDone() {
			group = g.take()
		}
		if len(group) == 0 {
			// c is done, or in another leader's group with nothing left
			// waiting: the lead passes on.
			if c.ledToo() { // handed the lead while leading already
				g.handOver()
			}
			g.handOver()
			g.mu.Unlock()
			<-c.done
			return
		}
		g.mu.Unlock()
		g.send(group)
	}
}

// handOver gives the lead to the first waiting caller that has not been
// given it already, or frees the slot. g.mu is held.
func (g *committer) handOver() {
	for _, c := range g.queue {
		if !c.led {
			c.led = true
			c.lead <- struct{}{}
			return
		}
	}
	g.inFlight--
}

// take removes the next group from the queue: the oldest calls, at most
// maxGroup, none touching a stream another already touches. g.mu is held.
func (g *committer) take() []*commit {
	group := make([]*commit, 0, min(len(g.queue), g.maxGroup))
	var seen map[string]bool
	rest := g.queue[:0]
	for _, c := range g.queue {
		if len(group) == g.maxGroup || clash(seen, c) {
			rest = append(rest, c)
			continue
		}
		if len(g.queue) > 1 {
			if seen == nil {
				seen = make(map[string]bool)
			}
			for _, p := range c.streams {
				seen[p.StreamID] = true
			}
		}
		group = append(group, c)
	}
	clear(g.queue[len(rest):])
	g.queue = rest
	return group
}

func clash(seen map[string]bool, c *commit) bool {
	for _, p := range c.streams {
		if seen[p.StreamID] {
			return true
		}
	}
	return false
}

// send commits group in one transaction and gives each member its outcome.
func (g *committer) send(group []*commit) {
	if len(group) == 1 {
		c := group[0]
		events, err := g.store.commitOne(c.ctx, c.streams, c.with)
		g.store.observe(1, false) // before the caller hears: tests read it then
		c.finish(events, err)
		return
	}
	ctx, cancel := groupContext(group)
	defer cancel()
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	// The streams that get one event share one insert; the others have
	// one each. Each member's statements come after every insert.
	var one []*pending
	for _, c := range group {
		for _, p := range c.streams {
			if len(p.Events) == 1 {
				one = append(one, p)
			}
		}
	}
	var shared *singles
	if len(one) > 1 {
		shared = queueSingles(b, one)
	}
	recorded := make(map[*pending][]Event)
	for _, c := range group {
		for _, p := range c.streams {
			if shared != nil && len(p.Events) == 1 {
				continue
			}
			b.Queue(p.sql(), p.args()...).Query(func(rows pgx.Rows) error {
				events, err := p.recorded(rows, nil)
				var pgErr *pgconn.PgError
				if err != nil && errors.As(rows.Err(), &pgErr) {
					return pgErr // refused: the group runs alone
				}
				recorded[p] = events
				return err
			})
		}
	}
	g.store.queueWith(b, group)
	var committed bool
	b.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
		committed = tag.String() == "COMMIT"
		return nil
	})
	br := g.store.pool.SendBatch(ctx, b)
	defer func() { _ = br.Tx().Rollback(context.WithoutCancel(ctx)) }()
	err := br.Close()
	var pgErr *pgconn.PgError
	switch {
	case err == nil && committed:
		g.store.observe(len(group), false)
		for _, c := range group {
			var events []Event
			for _, p := range c.streams {
				if e, ok := shared.event(p); ok {
					events = append(events, e)
				} else {
					events = append(events, recorded[p]...)
				}
			}
			c.finish(events, nil)
		}
	case !committed && (err == nil || errors.As(err, &pgErr) && pgErr.Severity == "ERROR"):
		// PostgreSQL refused a statement (an ERROR ends the transaction,
		// not the session) or COMMIT rolled back: nothing of the group is
		// recorded. Each member runs alone.
		g.store.observe(len(group), true)
		for _, c := range group {
			c.retryAlone()
		}
	default:
		// The connection failed, or the server ended the session: COMMIT
		// may have taken effect. That is every member's answer, as it
		// would be for a call alone.
		g.store.observe(len(group), false)
		for _, c := range group {
			c.finish(nil, fmt.Errorf("eventstore: append: %w", err))
		}
	}
}

func (s *Store) observe(members int, refused bool) {
	if s.onGroup != nil {
		s.onGroup(members, refused)
	}
}

// groupContext is the context a group runs in: none of its members' may
// cancel the others' commit, but it ends at the earliest of their
// deadlines, so that no member waits past its own for long.
func groupContext(group []*commit) (context.Context, context.CancelFunc) {
	ctx := context.WithoutCancel(group[0].ctx)
	var earliest time.Time
	for _, c := range group {
		if d, ok := c.ctx.Deadline(); ok && (earliest.IsZero() || d.Before(earliest)) {
			earliest = d
		}
	}
	if earliest.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, earliest)
}

func (c *commit) finish(events []Event, err error) {
	c.events, c.err = events, err
	close(c.done)
}

func (c *commit) retryAlone() {
	c.alone = true
	close(c.done)
}

// ledToo takes the lead if it was sent: once c is done or out of the
// queue, nothing sends it any more.
func (c *commit) ledToo() bool {
	select {
	case <-c.lead:
		return true
	default:
		return false
	}
}

func (c *commit) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// result is c's outcome; a member of a refused group runs alone here, on
// its caller's goroutine.
func (c *commit) result() ([]Event, error) {
	if c.alone {
		return nil, errRunAlone
	}
	return c.events, c.err
}

// errRunAlone tells AppendCommit that the call's group was refused.
var errRunAlone = errors.New("eventstore: run alone")

// queueWith queues the statements group's members queued, in their order,
// but that the statements WithMerged names go as one where several
// members queued them.
func (s *Store) queueWith(b *pgx.Batch, group []*commit) {
	if len(s.merged) == 0 {
		for _, c := range group {
			requeue(b, c.with)
		}
		return
	}
	var order []*pgx.QueuedQuery // nil: the next statement WithMerged names
	var names []string
	same := make(map[string][]*pgx.QueuedQuery)
	for _, c := range group {
		for _, q := range c.with.QueuedQueries {
			if _, ok := s.merged[q.SQL]; !ok {
				order = append(order, q)
				continue
			}
			if len(same[q.SQL]) == 0 {
				order = append(order, nil)
				names = append(names, q.SQL)
			}
			same[q.SQL] = append(same[q.SQL], q)
		}
	}
	for _, q := range order {
		if q != nil {
			b.QueuedQueries = append(b.QueuedQueries, &pgx.QueuedQuery{SQL: q.SQL, Arguments: q.Arguments, Fn: q.Fn})
			continue
		}
		sql := names[0]
		names = names[1:]
		qs := same[sql]
		if args, ok := columns(qs); ok {
			b.Queue(s.merged[sql], args...)
			continue
		}
		for _, q := range qs {
			b.QueuedQueries = append(b.QueuedQueries, &pgx.QueuedQuery{SQL: q.SQL, Arguments: q.Arguments, Fn: q.Fn})
		}
	}
}

// columns is the statements' arguments as one array per parameter; not ok
// for a single statement, or statements with different numbers of
// arguments.
func columns(qs []*pgx.QueuedQuery) (cols []any, ok bool) {
	if len(qs) < 2 {
		return nil, false
	}
	n := len(qs[0].Arguments)
	for _, q := range qs {
		if len(q.Arguments) != n {
			return nil, false
		}
	}
	cols = make([]any, n)
	for i := range cols {
		cols[i] = column(qs, i)
	}
	return cols, true
}

// column is the statements' i-th arguments as a slice of their type, which
// pgx encodes with one plan for all (a []any costs a plan per element); as
// a []any when their types differ, or a nil stands where the type has no
// nil.
func column(qs []*pgx.QueuedQuery, i int) any {
	var typ reflect.Type
	for _, q := range qs {
		if v := q.Arguments[i]; v != nil {
			if t := reflect.TypeOf(v); typ == nil {
				typ = t
			} else if t != typ {
				typ = nil
				break
			}
		}
	}
	if typ != nil {
		col := reflect.MakeSlice(reflect.SliceOf(typ), len(qs), len(qs))
		ok := true
		for j, q := range qs {
			if v := q.Arguments[i]; v != nil {
				col.Index(j).Set(reflect.ValueOf(v))
			} else if k := typ.Kind(); k != reflect.Slice && k != reflect.Pointer && k != reflect.Map {
				ok = false // its zero value is not SQL null
				break
			}
		}
		if ok {
			return col.Interface()
		}
	}
	col := make([]any, len(qs))
	for j, q := range qs {
		col[j] = q.Arguments[i]
	}
	return col
}
