// Package benchtools holds what scripts/bench.sh needs besides the upsell
// binary: seeding a large, realistic event log fast. It is a measuring aid,
// not part of the service.
package benchtools

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/catalog"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/loadgen"
)

// SeedConfig is a log to seed.
type SeedConfig struct {
	// Seed picks loadgen's data: MSP lg-<Seed>, its users and customers.
	// Use another seed than the load generator's runs (1 by default), so
	// that its customers stay untouched.
	Seed uint64
	// Customers are onboarded first (one CustomerOnboarded each).
	Customers int
	// Events is the least number of events the log gets from this seeding
	// (onboardings included); change quotes on the customers make up the
	// rest. The last quotes of the workers may go a few events beyond.
	Events int64
	// Workers append at once, each on customers of its own (default 8).
	Workers int
	// Users are the MSP's users the quotes are spread over (default 16).
	Users int
	// Interleave is how many quotes each worker has in progress at once,
	// each command of a quote its own append as the service makes them,
	// one command of each of those quotes per transaction: a quote's events
	// lie far apart in the log, as when many users work at once (default
	// 64). 1 appends each quote whole, in one transaction: its events lie
	// together, which flatters a rebuild.
	Interleave int
	// Progress, when not nil, is called about every second, and once at
	// the end, with the events appended so far.
	Progress func(done, total int64)
}

// SeedReport is what a seeding did.
type SeedReport struct {
	Customers int
	Quotes    int64
	Submitted int64
	Events    int64
	Elapsed   time.Duration
}

// onboardBatch is how many customers one append onboards (one transaction,
// one round trip for all of them).
const onboardBatch = 250

// SeedLog fills a migrated database with a realistic log, through
// eventstore.Append (so every event is hashed in its INSERT, as the service
// does): loadgen's MSP, users and catalog for cfg.Seed through the importer,
// cfg.Customers customers onboarded as the importer onboards them, then
// change quotes on them, decided by the domain exactly as the service
// decides them (open, raise seats, sometimes add a product, then save and
// leave, or review, acknowledge and submit, which amends the customer),
// appended one command at a time and interleaved (SeedConfig.Interleave),
// until the log holds cfg.Events events. Read models are not written:
// `upsell rebuild` makes them.
func SeedLog(ctx context.Context, pool *pgxpool.Pool, cfg SeedConfig) (SeedReport, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Users <= 0 {
		cfg.Users = 16
	}
	if cfg.Interleave <= 0 {
		cfg.Interleave = 64
	}
	cfg.Users = min(cfg.Users, cfg.Customers)
	var rep SeedReport
	if cfg.Customers < 1 {
		return rep, errors.New("seedlog: at least one customer is needed")
	}
	if cfg.Events < int64(cfg.Customers) {
		return rep, fmt.Errorf("seedlog: %d events cannot hold the onboarding of %d customers", cfg.Events, cfg.Customers)
	}
	start := time.Now()
	data, err := loadgen.Generate(cfg.Seed, cfg.Customers, cfg.Users)
	if err != nil {
		return rep, err
	}
	store := eventstore.New(pool)
	// The reference data (MSP, users, products) through the importer; the
	// customers below, in parallel.
	ref := *data.File
	ref.Customers = nil
	if _, err := importer.Import(ctx, store, &ref, domain.SystemClock{}); err != nil {
		return rep, fmt.Errorf("seedlog: import the MSP and the catalog: %w", err)
	}
	cat, err := catalog.Load(ctx, pool)
	if err != nil {
		return rep, err
	}
	mspName := data.File.MSPs[0].Name
	owner := map[string]string{} // customer id -> user id
	for _, u := range data.Users {
		for _, c := range u.Customers {
			owner[c] = u.ID
		}
	}

	var done, planned atomic.Int64
	stopProgress := make(chan struct{})
	var progressWG sync.WaitGroup
	if cfg.Progress != nil {
		progressWG.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					cfg.Progress(done.Load(), cfg.Events)
				}
			}
		})
	}
	defer func() {
		close(stopProgress)
		progressWG.Wait()
		if cfg.Progress != nil {
			cfg.Progress(done.Load(), cfg.Events)
		}
	}()

	// Customers, worker w owning those with index % workers == w.
	workers := min(cfg.Workers, cfg.Customers)
	histories := make([][][]domain.Event, workers) // per worker, per owned customer
	ids := make([][]string, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			runID := uuid.NewString()
			var batch []eventstore.Append
			flush := func() error {
				if len(batch) == 0 {
					return nil
				}
				if _, err := store.Append(ctx, batch...); err != nil {
					return fmt.Errorf("seedlog: onboard customers: %w", err)
				}
				done.Add(int64(len(batch)))
				batch = batch[:0]
				return nil
			}
			for i := w; i < cfg.Customers; i += workers {
				c := data.File.Customers[i]
				onboarded, err := onboarding(cat, c)
				if err != nil {
					errs[w] = err
					return
				}
				_, schema, payload, err := domain.EncodeEvent(onboarded)
				if err != nil {
					errs[w] = err
					return
				}
				batch = append(batch, eventstore.Append{
					StreamID: c.ID, StreamType: domain.StreamCustomer, ExpectedVersion: eventstore.NoStream,
					Events: []eventstore.NewEvent{{Type: onboarded.EventType(), SchemaVersion: schema, Data: payload,
						Metadata: eventstore.Metadata{MSPID: c.MSPID, UserID: "import", CorrelationID: runID, CausationID: runID}}},
				})
				histories[w] = append(histories[w], []domain.Event{onboarded})
				ids[w] = append(ids[w], c.ID)
				if len(batch) == onboardBatch {
					if errs[w] = flush(); errs[w] != nil {
						return
					}
				}
			}
			errs[w] = flush()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return rep, err
	}
	rep.Customers = cfg.Customers

	// Quotes until the log holds cfg.Events. Each worker goes round its own
	// customers, with at most one quote in progress per customer, so that
	// a customer's submissions chain on its latest version without
	// conflicts.
	planned.Store(int64(cfg.Customers))
	var quotes, submitted atomic.Int64
	for w := range workers {
		wg.Go(func() {
			s := &quoteSeeder{
				cfg: &cfg, cat: cat, mspName: mspName, owner: owner, store: store,
				rng:       rand.New(rand.NewPCG(cfg.Seed, uint64(w)+1<<32)),
				histories: histories[w], ids: ids[w],
				planned: &planned, done: &done, quotes: &quotes, submitted: &submitted,
			}
			errs[w] = s.run(ctx)
		})
	}
	wg.Wait()
	rep.Quotes, rep.Submitted, rep.Events = quotes.Load(), submitted.Load(), done.Load()
	rep.Elapsed = time.Since(start)
	return rep, errors.Join(errs...)
}

// quoteSeeder is one worker's quotes: its customers' histories, and the
// quotes in progress.
type quoteSeeder struct {
	cfg                              *SeedConfig
	cat                              *domain.Catalog
	mspName                          string
	owner                            map[string]string
	store                            *eventstore.Store
	rng                              *rand.Rand
	histories                        [][]domain.Event // per customer of this worker
	ids                              []string
	planned, done, quotes, submitted *atomic.Int64
	next                             int // the customer the next quote is on
}

// plan is a quote decided in full, appended one command at a time.
type plan struct {
	customer int // index into the worker's customers
	by       domain.Actor
	stream   string
	commands []command
	at       int   // the next command
	version  int64 // the quote stream's version so far
	amended  []domain.Event
}

// command is what one command appends: one event of the quote, and for a
// submission the customer's SubscriptionAmended too.
type command struct {
	quote           domain.Event
	customer        []domain.Event
	customerVersion int64
}

// newPlan decides the next quote, or returns nil when the log will have
// enough events once the quotes in progress are appended, or when every
// customer of the worker has a quote in progress.
func (s *quoteSeeder) newPlan(busy map[int]bool) (*plan, error) {
	if s.planned.Load() >= s.cfg.Events || len(busy) >= len(s.ids) {
		return nil, nil
	}
	j := s.next % len(s.ids)
	for busy[j] {
		s.next++
		j = s.next % len(s.ids)
	}
	s.next++
	customer, err := domain.LoadCustomer(s.histories[j])
	if err != nil {
		return nil, err
	}
	by := domain.Actor{MSPID: customer.MSPID(), UserID: s.owner[customer.ID()]}
	q, submit, err := quoteFlow(s.rng, s.cat, customer, s.mspName, by)
	if err != nil {
		return nil, fmt.Errorf("seedlog: quote on %s: %w", customer.ID(), err)
	}
	p := &plan{customer: j, by: by, stream: q.ID().String()}
	for _, e := range q.Changes() {
		p.commands = append(p.commands, command{quote: e})
	}
	n := len(p.commands)
	if submit {
		// The submission is the quote's last event; the amendment goes
		// with it.
		p.amended = customer.Changes()
		last := &p.commands[len(p.commands)-1]
		last.customer, last.customerVersion = p.amended, customer.ExpectedVersion()
		n += len(p.amended)
	}
	s.planned.Add(int64(n))
	return p, nil
}

// run appends quotes until the log has enough: each transaction carries the
// next command of every quote in progress.
func (s *quoteSeeder) run(ctx context.Context) error {
	window := min(s.cfg.Interleave, len(s.ids))
	var inProgress []*plan
	busy := map[int]bool{}
	for {
		for len(inProgress) < window {
			p, err := s.newPlan(busy)
			if err != nil {
				return err
			}
			if p == nil {
				break
			}
			busy[p.customer] = true
			inProgress = append(inProgress, p)
		}
		if len(inProgress) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// A quote appended whole (Interleave 1) is one append of all its
		// commands; else one command per quote.
		var appends []eventstore.Append
		events := 0
		for _, p := range inProgress {
			cmds := p.commands[p.at : p.at+1]
			if s.cfg.Interleave == 1 {
				cmds = p.commands[p.at:]
			}
			qa := eventstore.Append{StreamID: p.stream, StreamType: domain.StreamChangeQuote, ExpectedVersion: p.version}
			for _, c := range cmds {
				if err := addEvents(&qa, []domain.Event{c.quote}, p.by); err != nil {
					return err
				}
			}
			appends = append(appends, qa)
			events += len(cmds)
			if c := cmds[len(cmds)-1]; c.customer != nil {
				ca := eventstore.Append{StreamID: s.ids[p.customer], StreamType: domain.StreamCustomer, ExpectedVersion: c.customerVersion}
				if err := addEvents(&ca, c.customer, p.by); err != nil {
					return err
				}
				appends = append(appends, ca)
				events += len(c.customer)
			}
		}
		if _, err := s.store.Append(ctx, appends...); err != nil {
			return fmt.Errorf("seedlog: append: %w", err)
		}
		s.done.Add(int64(events))
		kept := inProgress[:0]
		for _, p := range inProgress {
			step := 1
			if s.cfg.Interleave == 1 {
				step = len(p.commands) - p.at
			}
			p.at += step
			p.version += int64(step)
			if p.at < len(p.commands) {
				kept = append(kept, p)
				continue
			}
			delete(busy, p.customer)
			s.quotes.Add(1)
			if p.amended != nil {
				s.histories[p.customer] = append(s.histories[p.customer], p.amended...)
				s.submitted.Add(1)
			}
		}
		inProgress = kept
	}
}

// addEvents encodes events onto a, as one command of by: one causation id
// (the command's), which is also the correlation id.
func addEvents(a *eventstore.Append, events []domain.Event, by domain.Actor) error {
	id := uuid.NewString()
	for _, e := range events {
		typ, schema, payload, err := domain.EncodeEvent(e)
		if err != nil {
			return err
		}
		a.Events = append(a.Events, eventstore.NewEvent{Type: typ, SchemaVersion: schema, Data: payload,
			Metadata: eventstore.Metadata{MSPID: by.MSPID, UserID: by.UserID, CorrelationID: id, CausationID: id}})
	}
	return nil
}

// onboarding is the CustomerOnboarded the importer records for c.
func onboarding(cat *domain.Catalog, c importer.Customer) (domain.CustomerOnboarded, error) {
	var lines []domain.Line
	currency := c.Currency
	for _, s := range c.Subscriptions {
		p, err := cat.Product(s.ProductCode)
		if err != nil {
			return domain.CustomerOnboarded{}, err
		}
		price, err := domain.ParseMoney(s.UnitPrice)
		if err != nil {
			return domain.CustomerOnboarded{}, err
		}
		if currency == "" {
			currency = p.Currency
		}
		lines = append(lines, domain.Line{ProductCode: s.ProductCode, ProductName: p.Name, TermType: s.TermType,
			PerUser: p.PerUser, Seats: s.Seats, UnitPrice: price})
	}
	fresh, err := domain.OnboardCustomer(c.ID, c.MSPID, c.Name, currency, lines, time.Now())
	if err != nil {
		return domain.CustomerOnboarded{}, err
	}
	return fresh.Changes()[0].(domain.CustomerOnboarded), nil
}

// quoteFlow decides one quote on customer as MSP staff make them: open, 1
// to 12 seat raises on the subscription's lines, a product added to one
// quote in three, then half the quotes saved and left, the other half
// reviewed, acknowledged and submitted (a quarter of them saved first).
// When submitted, customer holds the SubscriptionAmended to append.
func quoteFlow(rng *rand.Rand, cat *domain.Catalog, customer *domain.Customer, mspName string, by domain.Actor) (*domain.ChangeQuote, bool, error) {
	now := time.Now()
	q, err := domain.OpenChangeQuote(uuid.New(), customer, mspName, by, now)
	if err != nil {
		return nil, false, err
	}
	lines := customer.Lines()
	seats := map[string]int{}
	for _, l := range lines {
		seats[l.ProductCode] = l.Seats
	}
	changed := false
	for range 1 + rng.IntN(12) {
		if len(lines) == 0 {
			break
		}
		l := lines[rng.IntN(len(lines))]
		total := seats[l.ProductCode] + 1 + rng.IntN(25)
		if total > domain.MaxSeats {
			continue
		}
		if err := q.ChangeSeats(cat, l.ProductCode, total); err != nil {
			return nil, false, err
		}
		seats[l.ProductCode] = total
		changed = true
	}
	if rng.IntN(3) == 0 || !changed {
		var addable []domain.Product
		for _, p := range cat.Products() {
			if _, on := seats[p.Code]; !on && p.Currency == customer.Currency() {
				addable = append(addable, p)
			}
		}
		if len(addable) > 0 {
			p := addable[rng.IntN(len(addable))]
			n := max(1, min(customer.TotalUsers(), domain.MaxSeats))
			if !p.PerUser {
				n = 1 + rng.IntN(3)
			}
			if err := q.AddProduct(cat, p.Code, p.TermTypes[rng.IntN(len(p.TermTypes))], n); err != nil {
				return nil, false, err
			}
			changed = true
		}
	}
	submit := changed && rng.IntN(2) == 0
	if !submit || rng.IntN(4) == 0 {
		if err := q.Save(now); err != nil {
			return nil, false, err
		}
	}
	if !submit {
		return q, false, nil
	}
	if err := q.Review(now); err != nil {
		return nil, false, err
	}
	if err := q.Acknowledge(true, true, by, now); err != nil {
		return nil, false, err
	}
	if err := q.Submit(customer, by, now); err != nil {
		return nil, false, err
	}
	return q, true, nil
}
