package handlers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/domain"
)

// keyChannel is the channel on which migration 009's trigger announces
// every change to msp_users.
const keyChannel = "upsell_api_keys"

// DefaultKeyCacheSize bounds a KeyCache: 10,000 users' keys are about
// 1 MB. Only keys that belong to a user are cached, so the bound is
// reached only with more users than that busy at once.
const DefaultKeyCacheSize = 10_000

// KeyCache keeps the users of API keys in memory (by the keys' SHA-256,
// never the keys), so that an authenticated request needs no round trip
// to look its key up (Config.Keys).
//
// It is never staler than a notification's delay: migration 009 has every
// change to msp_users announced on the channel upsell_api_keys, and Run
// listens to it on a connection of its own and forgets every cached key at
// each announcement. Keys are cached, and the cache used, only while Run
// is listening: before it listens, after it lost its connection (a change
// made then would be announced to nobody) and after it stopped, every
// request looks its key up in the database, as without a cache.
//
// A lookup in the database that started before a change may read the
// user as it was and finish after the announcement cleared the cache; it
// must not put that user back. So every clear moves a generation on, a
// lookup takes the generation before it reads (lookup's ticket), and its
// answer is stored only if the generation is still the same.
//
// Only keys that resolved to a user are cached, so keys an attacker makes
// up cannot fill the memory; and at most DefaultKeyCacheSize keys are
// kept, a new one taking the place of an arbitrary one when it is full.
//
// A nil *KeyCache caches nothing: every key is looked up in the database.
type KeyCache struct {
	connConfig *pgx.ConnConfig
	log        *slog.Logger

	// What tests shorten or replace.
	maxEntries  int
	callTimeout time.Duration // bounds connecting, LISTEN, a ping, closing
	heartbeat   time.Duration // a ping after this long without an announcement
	minBackoff  time.Duration // the first wait before connecting again
	maxBackoff  time.Duration
	connect     func(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error)

	mu        sync.RWMutex
	gen       uint64 // moves on at every clear; starts at 1, so a ticket of 0 stores nothing
	listening bool
	pid       uint32 // the listener's backend, while listening
	entries   map[[sha256.Size]byte]cachedKey
}

// cachedKey is a key's user, with the hash it was stored under in
// msp_users, compared again in constant time at every use.
type cachedKey struct {
	actor domain.Actor
	hash  [sha256.Size]byte
}

// NewKeyCache returns a cache whose Run listens on a connection of its own
// made with pool's connection settings (not one of the pool's: it is held
// for as long as Run runs). Nothing is cached until Run listens.
func NewKeyCache(pool *pgxpool.Pool, log *slog.Logger) *KeyCache {
	cfg := pool.Config().ConnConfig // a copy: changing it leaves the pool alone
	// A wait for an announcement that times out (to ping, see listen) must
	// leave the connection open and usable: pgx's default does, by a read
	// deadline; a handler that cancels on the server would be no better
	// here, so the default is set whatever the pool uses.
	cfg.BuildContextWatcherHandler = func(pgConn *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pgConn.Conn()}
	}
	if log == nil {
		log = slog.Default()
	}
	return &KeyCache{
		connConfig:  cfg,
		log:         log,
		maxEntries:  DefaultKeyCacheSize,
		callTimeout: 10 * time.Second,
		heartbeat:   15 * time.Second,
		minBackoff:  100 * time.Millisecond,
		maxBackoff:  10 * time.Second,
		connect:     pgx.ConnectConfig,
		gen:         1,
		entries:     map[[sha256.Size]byte]cachedKey{},
	}
}

// lookup returns the cached user of the key hash (ok), or else a ticket for
// store: 0 when nothing may be stored (not listening), else the
// generation before the database is asked.
func (c *KeyCache) lookup(hash []byte) (actor domain.Actor, ticket uint64, ok bool) {
	if c == nil || len(hash) != sha256.Size {
		return domain.Actor{}, 0, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.listening {
		return domain.Actor{}, 0, false
	}
	if e, found := c.entries[[sha256.Size]byte(hash)]; found && sameKeyHash(e.hash[:], hash) {
		return e.actor, 0, true
	}
	return domain.Actor{}, c.gen, false
}

// store caches the user of the key whose hash msp_users holds as stored,
// unless the cache was cleared (or stopped listening) since ticket was
// taken: what the database answered may then be older than the clear.
func (c *KeyCache) store(ticket uint64, stored []byte, actor domain.Actor) {
	if c == nil || ticket == 0 || len(stored) != sha256.Size {
		return
	}
	k := [sha256.Size]byte(stored)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.listening || c.gen != ticket {
		return
	}
	if _, found := c.entries[k]; !found && len(c.entries) >= c.maxEntries {
		// Full: an arbitrary key (map order is random) gives way. It is
		// looked up again at its next use, nothing worse.
		for old := range c.entries {
			delete(c.entries, old)
			break
		}
	}
	c.entries[k] = cachedKey{actor: actor, hash: k}
}

// forget clears the cache and moves the generation on, so that no lookup
// begun before stores its answer.
func (c *KeyCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgetLocked()
}

func (c *KeyCache) forgetLocked() {
	c.gen++
	clear(c.entries)
}

// setListening starts or stops the cache's use. Either way it is cleared:
// a change made while nobody listened was announced to nobody.
func (c *KeyCache) setListening(on bool, pid uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgetLocked()
	c.listening, c.pid = on, pid
}

// Run listens for changes of msp_users, clearing the cache at each, until
// ctx ends. When the connection is lost (or cannot be made), the cache is
// cleared and not used until Run listens again; it tries again after a
// wait that doubles from a tenth of a second up to 10 s, and every call
// to the database is bounded. It returns once ctx has ended, the cache no
// longer used and the connection closed.
func (c *KeyCache) Run(ctx context.Context) {
	backoff := c.minBackoff
	for {
		listened, err := c.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		if listened {
			backoff = c.minBackoff
		}
		// Half to all of the backoff: instances that lost the database
		// together do not all come back at the same instant.
		wait := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("API key cache: not listening for changes of users; every key is looked up in the database until it listens again",
			"err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, c.maxBackoff)
	}
}

// listen connects, listens and clears the cache at every announcement
// until the connection fails or ctx ends. listened reports whether it got
// as far as listening; err is why it stopped (nil when ctx ended).
func (c *KeyCache) listen(ctx context.Context) (listened bool, err error) {
	callCtx, cancel := context.WithTimeout(ctx, c.callTimeout)
	conn, err := c.connect(callCtx, c.connConfig)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		// Bounded, and not by ctx: the connection is closed when ctx has
		// ended too.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.callTimeout)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	callCtx, cancel = context.WithTimeout(ctx, c.callTimeout)
	_, err = conn.Exec(callCtx, "LISTEN "+keyChannel)
	cancel()
	if err != nil {
		return false, fmt.Errorf("LISTEN %s: %w", keyChannel, err)
	}
	// From here on every committed change is announced to this
	// connection; the cache is cleared as it starts, so nothing read
	// before it listened survives. Deferred calls run last first: the
	// cache is out of use before the connection closes.
	c.setListening(true, conn.PgConn().PID())
	defer c.setListening(false, 0)
	for {
		waitCtx, cancel := context.WithTimeout(ctx, c.heartbeat)
		_, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			c.forget()
		case ctx.Err() != nil:
			return true, nil
		case pgconn.Timeout(err) && !conn.IsClosed():
			// Nothing announced for a while. A connection the network
			// dropped without a word would say nothing for ever, and the
			// cache would go on answering as changes went unheard: ask
			// the server, so that such a connection is found out within
			// a heartbeat and a call's timeout.
			pingCtx, cancel := context.WithTimeout(ctx, c.callTimeout)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return true, nil
				}
				return true, fmt.Errorf("ping: %w", err)
			}
		default:
			return true, fmt.Errorf("wait for changes of users: %w", err)
		}
	}
}
