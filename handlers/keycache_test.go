package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// keyLookups counts the key lookups that reach the database (a pgx tracer
// on the pool of the Server under test).
type keyLookups struct{ n atomic.Int64 }

func (k *keyLookups) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.Contains(data.SQL, "FROM msp_users WHERE api_key_hash") {
		k.n.Add(1)
	}
	return ctx
}

func (k *keyLookups) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// syncLog keeps what the server logs, for the test to read.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cacheWorld is the authentication middleware of a Server with a key
// cache, on a pool that counts key lookups; admin is an uncounted pool on
// the same database, for the test's own changes.
type cacheWorld struct {
	t       *testing.T
	admin   *pgxpool.Pool
	lookups *keyLookups
	keys    *KeyCache
	h       http.HandlerFunc
	log     *syncLog
	stopped chan struct{}
	stop    context.CancelFunc
}

// newCacheWorld serves the middleware on admin's database with a key cache
// (tune changes it before it runs), starts the cache's listener unless
// run is false, and waits until it listens. The cleanup stops the
// listener and checks that nothing logged names a key or a hash.
func newCacheWorld(t *testing.T, admin *pgxpool.Pool, run bool, tune func(*KeyCache)) *cacheWorld {
	t.Helper()
	w := &cacheWorld{t: t, admin: admin, lookups: &keyLookups{}, log: &syncLog{}, stopped: make(chan struct{})}
	cfg := admin.Config()
	cfg.ConnConfig.Tracer = w.lookups
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	log := slog.New(slog.NewTextHandler(w.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.keys = NewKeyCache(pool, log)
	w.keys.minBackoff, w.keys.maxBackoff = 5*time.Millisecond, 50*time.Millisecond
	if tune != nil {
		tune(w.keys)
	}
	s := &Server{Config: Config{Pool: pool, Log: log, Metrics: NewMetrics(nil), Keys: w.keys}}
	w.h = s.observed("/test", s.authenticated(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, actorOf(r.Context()))
	}))
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.stopped:
		case <-time.After(30 * time.Second):
			t.Error("the key cache's listener did not stop within 30 s of its context's end")
		}
	})
	if !run {
		close(w.stopped)
		return w
	}
	go func() {
		defer close(w.stopped)
		w.keys.Run(ctx)
	}()
	w.listening(0)
	return w
}

// checkLogs fails the test if the server's log names any of the keys or
// their hashes (raw or in hex).
func (w *cacheWorld) checkLogs(keys ...string) {
	w.t.Helper()
	logged := w.log.String()
	for _, k := range keys {
		h := importer.HashAPIKey(k)
		for _, secret := range []string{k, string(h), hex.EncodeToString(h), strings.ToUpper(hex.EncodeToString(h))} {
			if strings.Contains(logged, secret) {
				w.t.Errorf("the log names an API key or its hash:\n%s", logged)
				return
			}
		}
	}
}

// code authenticates a request with the key and returns its status.
func (w *cacheWorld) code(key string) int {
	req := httptest.NewRequest("GET", "/test", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	w.h(rec, req)
	return rec.Code
}

// as sends the key and fails the test unless it is the user's.
func (w *cacheWorld) as(key string, want domain.Actor) {
	w.t.Helper()
	req := httptest.NewRequest("GET", "/test", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	w.h(rec, req)
	var got domain.Actor
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &got) != nil || got != want {
		w.t.Fatalf("key of %+v: %d %s", want, rec.Code, rec.Body)
	}
}

// refused sends the key and fails the test unless it is 401.
func (w *cacheWorld) refused(key, what string) {
	w.t.Helper()
	if code := w.code(key); code != http.StatusUnauthorized {
		w.t.Fatalf("%s: %d, want 401", what, code)
	}
}

// cached makes sure the key is in the cache: asked twice, the second
// answer costs no lookup.
func (w *cacheWorld) cached(key string, want domain.Actor) {
	w.t.Helper()
	w.as(key, want)
	before := w.lookups.n.Load()
	w.as(key, want)
	if n := w.lookups.n.Load() - before; n != 0 {
		w.t.Fatalf("key of %+v asked again: %d lookups in the database, want none (cached)", want, n)
	}
}

// eventually polls cond until it holds, failing the test after 5 s.
func (w *cacheWorld) eventually(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("not within 5 s: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ownKeyUsers is keyUsers on a database of the test's own: every change to
// msp_users clears every listener's cache on the database, so tests that
// count lookups or clears would see each other's imports on a shared one.
func ownKeyUsers(t *testing.T, n int) (*pgxpool.Pool, string, []string) {
	t.Helper()
	pool := testdb.EmptyPool(t)
	msp, keys := importKeyUsers(t, pool, n)
	return pool, msp, keys
}

// snapshot is the cache's state.
type cacheSnapshot struct {
	listening bool
	pid       uint32
	entries   int
	gen       uint64
}

func (c *KeyCache) snapshot() cacheSnapshot {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return cacheSnapshot{c.listening, c.pid, len(c.entries), c.gen}
}

// listening waits until the listener listens on a backend other than
// notPID and returns its pid.
func (w *cacheWorld) listening(notPID uint32) uint32 {
	w.t.Helper()
	var s cacheSnapshot
	w.eventually("the key cache's listener listens", func() bool {
		s = w.keys.snapshot()
		return s.listening && s.pid != 0 && s.pid != notPID
	})
	return s.pid
}

// exec runs SQL on the uncounted pool.
func (w *cacheWorld) exec(sql string, args ...any) {
	w.t.Helper()
	if _, err := w.admin.Exec(context.Background(), sql, args...); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
}

// setKey gives the user another API key, as an operator would in SQL.
func (w *cacheWorld) setKey(msp, user, key string) {
	w.t.Helper()
	w.exec(`UPDATE msp_users SET api_key_hash = $3 WHERE msp_id = $1 AND id = $2`, msp, user, importer.HashAPIKey(key))
}

func user(msp string, i int) domain.Actor {
	return domain.Actor{MSPID: msp, UserID: fmt.Sprintf("u%d", i)}
}

// TestKeyCacheAnswersFromMemory: once a key has been looked up, it is
// answered without a query, as its user; each key is looked up once.
func TestKeyCacheAnswersFromMemory(t *testing.T) {
	t.Parallel()
	admin, msp, keys := ownKeyUsers(t, 2)
	w := newCacheWorld(t, admin, true, nil)
	for i, k := range keys {
		w.as(k, user(msp, i))
	}
	if n := w.lookups.n.Load(); n != 2 {
		t.Fatalf("%d lookups for two keys, want 2", n)
	}
	for range 10 {
		for i, k := range keys {
			w.as(k, user(msp, i))
		}
	}
	if n := w.lookups.n.Load(); n != 2 {
		t.Errorf("%d lookups after the keys were cached, want still 2", n)
	}
	if s := w.keys.snapshot(); s.entries != 2 {
		t.Errorf("%d keys cached, want 2", s.entries)
	}
	// Nothing in the way of the usual refusals.
	w.refused(keys[0]+"x", "a near miss of a cached key")
	w.checkLogs(keys...)
}

// TestKeyCacheUnusedUntilListening: a cache whose listener does not run
// (it could not hear of changes) caches nothing: every request looks its
// key up, as without a cache; and a nil cache is no cache.
func TestKeyCacheUnusedUntilListening(t *testing.T) {
	t.Parallel()
	admin, msp, keys := keyUsers(t, 1)
	w := newCacheWorld(t, admin, false, nil)
	for i := range 5 {
		w.as(keys[0], user(msp, 0))
		if n := w.lookups.n.Load(); n != int64(i+1) {
			t.Fatalf("request %d: %d lookups, want %d (no listener, no cache)", i+1, n, i+1)
		}
	}
	if s := w.keys.snapshot(); s.entries != 0 {
		t.Errorf("%d keys cached without a listener", s.entries)
	}

	var none *KeyCache
	if _, ticket, ok := none.lookup(importer.HashAPIKey(keys[0])); ok || ticket != 0 {
		t.Errorf("a nil cache: lookup = %v, ticket %d", ok, ticket)
	}
	none.store(1, importer.HashAPIKey(keys[0]), user(msp, 0)) // must not panic
}

// TestKeyCacheForgetsChangedUsers: whatever changes a cached user (a new
// key, another id, deleting it, truncating the users or, by cascade, the
// MSPs), the old answer is gone within moments.
func TestKeyCacheForgetsChangedUsers(t *testing.T) {
	t.Parallel()
	t.Run("key changed", func(t *testing.T) {
		t.Parallel()
		admin, msp, keys := ownKeyUsers(t, 2)
		w := newCacheWorld(t, admin, true, nil)
		w.cached(keys[0], user(msp, 0))
		w.cached(keys[1], user(msp, 1))
		w.setKey(msp, "u0", keys[0]+"-new")
		w.eventually("the old key is refused", func() bool { code := w.code(keys[0]); return code == http.StatusUnauthorized })
		w.as(keys[0]+"-new", user(msp, 0))
		w.as(keys[1], user(msp, 1))
		w.checkLogs(keys[0], keys[1], keys[0]+"-new")
	})
	t.Run("user id changed", func(t *testing.T) {
		t.Parallel()
		admin, msp, keys := ownKeyUsers(t, 1)
		w := newCacheWorld(t, admin, true, nil)
		w.cached(keys[0], user(msp, 0))
		w.exec(`UPDATE msp_users SET id = 'u0-renamed' WHERE msp_id = $1 AND id = 'u0'`, msp)
		renamed := domain.Actor{MSPID: msp, UserID: "u0-renamed"}
		w.eventually("the key is the renamed user's", func() bool {
			req := httptest.NewRequest("GET", "/test", nil)
			req.Header.Set("Authorization", "Bearer "+keys[0])
			rec := httptest.NewRecorder()
			w.h(rec, req)
			return rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), `"u0-renamed"`)
		})
		w.cached(keys[0], renamed)
	})
	t.Run("user deleted", func(t *testing.T) {
		t.Parallel()
		admin, msp, keys := ownKeyUsers(t, 2)
		w := newCacheWorld(t, admin, true, nil)
		w.cached(keys[0], user(msp, 0))
		w.cached(keys[1], user(msp, 1))
		w.exec(`DELETE FROM msp_users WHERE msp_id = $1 AND id = 'u0'`, msp)
		w.eventually("the deleted user's key is refused", func() bool { code := w.code(keys[0]); return code == http.StatusUnauthorized })
		w.cached(keys[1], user(msp, 1))
	})
	for _, sql := range []string{`TRUNCATE msp_users`, `TRUNCATE msps CASCADE`} {
		t.Run(sql, func(t *testing.T) {
			t.Parallel()
			admin, msp, keys := ownKeyUsers(t, 2)
			w := newCacheWorld(t, admin, true, nil)
			w.cached(keys[0], user(msp, 0))
			w.cached(keys[1], user(msp, 1))
			w.exec(sql)
			for _, k := range keys {
				w.eventually("a key of a truncated user is refused", func() bool { code := w.code(k); return code == http.StatusUnauthorized })
			}
		})
	}
	t.Run("rolled back", func(t *testing.T) {
		t.Parallel()
		admin, msp, keys := ownKeyUsers(t, 1)
		w := newCacheWorld(t, admin, true, nil)
		w.cached(keys[0], user(msp, 0))
		tx, err := admin.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(context.Background(), `DELETE FROM msp_users WHERE msp_id = $1`, msp); err != nil {
			t.Fatal(err)
		}
		// Uncommitted: the key is still the user's, cached or not.
		w.as(keys[0], user(msp, 0))
		if err := tx.Rollback(context.Background()); err != nil {
			t.Fatal(err)
		}
		w.as(keys[0], user(msp, 0))
	})
}

// TestKeyCacheListenerLoss: when the listener's connection is lost, the
// cache is cleared and bypassed (a key revoked meanwhile is refused at
// once, and a cached key revoked meanwhile stays refused after); once it
// listens again, keys are cached again.
func TestKeyCacheListenerLoss(t *testing.T) {
	t.Parallel()
	admin, msp, keys := ownKeyUsers(t, 3)
	// The test decides when the listener may connect again.
	var gate atomic.Pointer[chan struct{}]
	w := newCacheWorld(t, admin, true, func(c *KeyCache) {
		c.callTimeout = 2 * time.Second
		connect := c.connect
		c.connect = func(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
			if g := gate.Load(); g != nil {
				select {
				case <-*g:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return connect(ctx, cfg)
		}
	})
	for i, k := range keys {
		w.cached(k, user(msp, i))
	}
	closed := make(chan struct{})
	gate.Store(&closed)

	pid := w.keys.snapshot().pid
	w.exec(`SELECT pg_terminate_backend($1)`, int(pid))
	w.eventually("the cache stops being used", func() bool { return !w.keys.snapshot().listening })
	if s := w.keys.snapshot(); s.entries != 0 {
		t.Errorf("%d keys still cached after the listener lost its connection", s.entries)
	}

	// Down: every request asks the database.
	w.setKey(msp, "u0", keys[0]+"-new")
	w.setKey(msp, "u2", keys[2]+"-new")
	w.refused(keys[0], "a key revoked while the listener is down")
	before := w.lookups.n.Load()
	for range 3 {
		w.as(keys[1], user(msp, 1))
	}
	if n := w.lookups.n.Load() - before; n != 3 {
		t.Errorf("3 requests while the listener is down: %d lookups, want 3", n)
	}
	if s := w.keys.snapshot(); s.entries != 0 || s.listening {
		t.Errorf("while down: %+v, want nothing cached and not listening", s)
	}

	// Up again.
	gate.Store(nil)
	close(closed)
	w.listening(pid)
	w.refused(keys[2], "a cached key revoked while the listener was down")
	w.cached(keys[1], user(msp, 1))
	w.cached(keys[2]+"-new", user(msp, 2))
	if !strings.Contains(w.log.String(), "not listening") {
		t.Errorf("the loss is not logged:\n%s", w.log)
	}
	w.checkLogs(keys[0], keys[1], keys[2], keys[0]+"-new", keys[2]+"-new")
}

// silentConn is a connection that can fall silent: what is written to it
// then goes nowhere, as when the network drops it without a word.
type silentConn struct {
	net.Conn
	silent *atomic.Bool
}

func (c silentConn) Write(p []byte) (int, error) {
	if c.silent.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestKeyCacheSilentConnection: a listener's connection that stops
// answering is found out by the heartbeat's ping, and the cache bypassed.
func TestKeyCacheSilentConnection(t *testing.T) {
	t.Parallel()
	admin, msp, keys := ownKeyUsers(t, 1)
	var silent atomic.Pointer[atomic.Bool] // the latest connection's
	w := newCacheWorld(t, admin, true, func(c *KeyCache) {
		c.heartbeat, c.callTimeout = 50*time.Millisecond, time.Second
		c.connConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			s := &atomic.Bool{}
			silent.Store(s)
			return silentConn{Conn: conn, silent: s}, nil
		}
	})
	w.cached(keys[0], user(msp, 0))
	// A few heartbeats: pings that are answered change nothing.
	time.Sleep(200 * time.Millisecond)
	w.cached(keys[0], user(msp, 0))
	pid := w.keys.snapshot().pid

	silent.Load().Store(true)
	w.eventually("the silent connection is found out", func() bool { return !w.keys.snapshot().listening })
	if s := w.keys.snapshot(); s.entries != 0 {
		t.Errorf("%d keys still cached after the connection fell silent", s.entries)
	}
	w.listening(pid)
	w.cached(keys[0], user(msp, 0))
}

// TestKeyCacheIgnoresUnknownKeys: made-up keys are refused and take no
// room: each is looked up, none is cached.
func TestKeyCacheIgnoresUnknownKeys(t *testing.T) {
	t.Parallel()
	admin, msp, keys := ownKeyUsers(t, 1)
	w := newCacheWorld(t, admin, true, nil)
	w.cached(keys[0], user(msp, 0))
	before := w.lookups.n.Load()
	for i := range 200 {
		w.refused(fmt.Sprintf("%s-made-up-%d", keys[0], i%100), "a made-up key")
	}
	if n := w.lookups.n.Load() - before; n != 200 {
		t.Errorf("200 requests with made-up keys: %d lookups, want 200 (none cached)", n)
	}
	if s := w.keys.snapshot(); s.entries != 1 {
		t.Errorf("%d keys cached, want only the real one", s.entries)
	}
}

// TestKeyCacheBounded: the cache never holds more keys than its bound, and
// every key still answers as its user.
func TestKeyCacheBounded(t *testing.T) {
	t.Parallel()
	const users, bound = 8, 3
	admin, msp, keys := ownKeyUsers(t, users)
	w := newCacheWorld(t, admin, true, func(c *KeyCache) { c.maxEntries = bound })
	for round := range 3 {
		for i, k := range keys {
			w.as(k, user(msp, i))
			if s := w.keys.snapshot(); s.entries > bound {
				t.Fatalf("round %d, key %d: %d keys cached, bound %d", round, i, s.entries, bound)
			}
		}
	}
	if s := w.keys.snapshot(); s.entries != bound {
		t.Errorf("%d keys cached after %d users, want the bound %d", s.entries, users, bound)
	}
	// A full cache still caches: the key just asked is answered from it.
	w.cached(keys[0], user(msp, 0))
}

// TestKeyCacheStaleLookupNotStored: a lookup that began before the cache
// was cleared (an announcement, the listener stopping or starting) does
// not store its answer, which may be older than the change; one that began
// after does.
func TestKeyCacheStaleLookupNotStored(t *testing.T) {
	t.Parallel()
	c := &KeyCache{maxEntries: 10, gen: 1, entries: map[[sha256.Size]byte]cachedKey{}}
	h := importer.HashAPIKey("a key of a test")
	a := domain.Actor{MSPID: "msp", UserID: "u"}
	hit := func() bool { _, _, ok := c.lookup(h); return ok }
	ticket := func() uint64 {
		t.Helper()
		_, tk, ok := c.lookup(h)
		if ok {
			t.Fatal("a hit where a miss was wanted")
		}
		return tk
	}

	if tk := ticket(); tk != 0 {
		t.Fatalf("ticket %d while not listening, want 0", tk)
	}
	c.setListening(true, 42)

	tk := ticket()
	c.forget() // an announcement while the database is asked
	c.store(tk, h, a)
	if hit() {
		t.Error("an answer read before the announcement was stored after it")
	}

	tk = ticket()
	c.setListening(false, 0)
	c.setListening(true, 43) // the listener lost its connection and came back
	c.store(tk, h, a)
	if hit() {
		t.Error("an answer read before the listener came back was stored")
	}

	tk = ticket()
	c.setListening(false, 0)
	c.store(tk, h, a)
	if s := c.snapshot(); s.entries != 0 {
		t.Error("an answer was stored while the listener was down")
	}
	c.setListening(true, 44)

	tk = ticket()
	c.store(tk, h, a)
	if got, _, ok := c.lookup(h); !ok || got != a {
		t.Errorf("an answer read since the last clear: lookup = %+v, %v; want it cached", got, ok)
	}
	// Another hash, even one close to it, is not the cached key.
	near := append([]byte(nil), h...)
	near[sha256.Size-1] ^= 1
	if _, _, ok := c.lookup(near); ok {
		t.Error("a hash one bit off is a hit")
	}
	if _, tk, ok := c.lookup(h[:sha256.Size-1]); ok || tk != 0 {
		t.Error("a short hash is a hit, or may be stored")
	}
}

// TestKeyCacheRunStops: Run returns when its context ends, its connection
// is closed and the cache is no longer used.
func TestKeyCacheRunStops(t *testing.T) {
	t.Parallel()
	admin, msp, keys := ownKeyUsers(t, 1)
	w := newCacheWorld(t, admin, true, nil)
	w.cached(keys[0], user(msp, 0))
	pid := w.keys.snapshot().pid
	w.stop()
	select {
	case <-w.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of its context's end")
	}
	if s := w.keys.snapshot(); s.listening || s.entries != 0 {
		t.Errorf("after Run returned: %+v, want not listening and nothing cached", s)
	}
	before := w.lookups.n.Load()
	w.as(keys[0], user(msp, 0))
	w.as(keys[0], user(msp, 0))
	if n := w.lookups.n.Load() - before; n != 2 {
		t.Errorf("after Run returned, 2 requests: %d lookups, want 2", n)
	}
	w.eventually("the listener's session ends", func() bool {
		var alive bool
		err := admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, int(pid)).Scan(&alive)
		return err == nil && !alive
	})
}

// TestKeyCacheConcurrent: requests from many goroutines while keys are
// revoked and the listener loses its connection. Keys never revoked are
// always their users'; a revoked key is refused to every request that
// starts once the revocation has been announced; and the cache does its
// work (fewer lookups than requests). Run it with -race.
func TestKeyCacheConcurrent(t *testing.T) {
	t.Parallel()
	const users, revoked, workers = 6, 3, 8
	admin, msp, keys := ownKeyUsers(t, users)
	w := newCacheWorld(t, admin, true, nil)

	type answer struct {
		key   int
		start time.Time
		code  int
		user  string
	}
	var (
		wg      sync.WaitGroup
		done    atomic.Bool
		answers = make([][]answer, workers)
		sent    atomic.Int64
	)
	for g := range workers {
		wg.Go(func() {
			for !done.Load() {
				i := rand.IntN(users)
				start := time.Now()
				req := httptest.NewRequest("GET", "/test", nil)
				req.Header.Set("Authorization", "Bearer "+keys[i])
				rec := httptest.NewRecorder()
				w.h(rec, req)
				var got domain.Actor
				if rec.Code == http.StatusOK {
					if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
						t.Errorf("answer %s: %v", rec.Body, err)
					}
				}
				answers[g] = append(answers[g], answer{i, start, rec.Code, got.UserID})
				sent.Add(1)
			}
		})
	}

	// Revoke keys one by one; halfway, take the listener's connection away.
	settled := make([]time.Time, users) // when key i's revocation had been announced and seen
	for i := range revoked {
		time.Sleep(100 * time.Millisecond)
		if i == 1 {
			pid := w.keys.snapshot().pid
			w.exec(`SELECT pg_terminate_backend($1)`, int(pid))
			w.listening(pid)
			time.Sleep(100 * time.Millisecond)
		}
		gen := w.keys.snapshot().gen
		w.setKey(msp, fmt.Sprintf("u%d", i), keys[i]+"-revoked")
		w.eventually("the revocation is announced and the key refused", func() bool {
			if w.keys.snapshot().gen == gen {
				return false
			}
			code := w.code(keys[i])
			return code == http.StatusUnauthorized
		})
		settled[i] = time.Now()
	}
	time.Sleep(100 * time.Millisecond)
	done.Store(true)
	wg.Wait()

	total := sent.Load()
	for _, as := range answers {
		for _, a := range as {
			own := fmt.Sprintf("u%d", a.key)
			switch {
			case a.code == http.StatusOK && a.user != own:
				t.Errorf("key %d answered as %q", a.key, a.user)
			case a.key >= revoked && a.code != http.StatusOK:
				t.Errorf("key %d, never revoked, answered %d", a.key, a.code)
			case a.key < revoked && a.code != http.StatusOK && a.code != http.StatusUnauthorized:
				t.Errorf("key %d answered %d", a.key, a.code)
			case a.key < revoked && a.start.After(settled[a.key]) && a.code != http.StatusUnauthorized:
				t.Errorf("key %d, revoked and announced, answered %d to a request started %s after", a.key, a.code,
					a.start.Sub(settled[a.key]))
			}
		}
	}
	if n := w.lookups.n.Load(); n*2 > total {
		t.Errorf("%d requests, %d lookups: the cache answered less than half", total, n)
	}
	t.Logf("%d requests, %d lookups in the database", total, w.lookups.n.Load())
	w.checkLogs(keys...)
}
