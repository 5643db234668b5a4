package app

import (
	"fmt"
	"sync"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// DefaultQuoteCache is how many quotes a Service keeps in memory (a quote
// is a few kilobytes: its baseline and edited lines).
const DefaultQuoteCache = 2048

// quoteCache keeps quotes as their last load or command left them, so that
// the next command on a quote reads and decodes only the events appended
// since instead of its whole history.
//
// The cache saves work; it never decides. An entry is put only from a
// stored state (a load, or a command whose append committed), so it can be
// behind the log but never ahead of it, and every load asks the log for all
// the versions after the entry's: what another process appended meanwhile
// is read and applied like any event. The append's version check still
// guards every command.
//
// Entries are never handed out: get gives a clone, put keeps one, so no
// command can change what another reads.
type quoteCache struct {
	mu  sync.Mutex
	max int
	m   map[uuid.UUID]*domain.ChangeQuote
}

func newQuoteCache(max int) *quoteCache {
	if max <= 0 {
		return nil
	}
	return &quoteCache{max: max, m: make(map[uuid.UUID]*domain.ChangeQuote)}
}

// get returns a clone of the quote as last stored, or nil.
func (c *quoteCache) get(id uuid.UUID) *domain.ChangeQuote {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	q := c.m[id]
	c.mu.Unlock()
	if q == nil {
		return nil
	}
	return q.Clone() // entries are never changed, so cloning needs no lock
}

// put keeps q as stored at q.Version(), unless a later version is kept
// already. A full cache first drops an entry at random (Go's map order).
func (c *quoteCache) put(q *domain.ChangeQuote) {
	if c == nil || q == nil {
		return
	}
	kept := q.Clone()
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[kept.ID()]; ok {
		if old.Version() < kept.Version() {
			c.m[kept.ID()] = kept
		}
		return
	}
	if len(c.m) >= c.max {
		for id := range c.m {
			delete(c.m, id)
			break
		}
	}
	c.m[kept.ID()] = kept
}

// advance brings a cached quote of the actor's MSP up to date with the
// events stored after it (none, usually). Another MSP's quote is not found,
// as when it is loaded.
func advance(actor domain.Actor, q *domain.ChangeQuote, stored []eventstore.Event) (*domain.ChangeQuote, error) {
	if q.MSPID() != actor.MSPID {
		return nil, notFound("%s %q not found", "change quote", q.ID())
	}
	if len(stored) == 0 {
		return q, nil
	}
	if first := stored[0]; first.StreamType != domain.StreamChangeQuote || first.Version != q.Version()+1 {
		return nil, fmt.Errorf("change quote %s: the log gives %s version %d after the kept version %d",
			q.ID(), first.StreamType, first.Version, q.Version())
	}
	history, err := DecodeEvents(stored)
	if err != nil {
		return nil, err
	}
	return domain.ReplayChangeQuote(q, history)
}
