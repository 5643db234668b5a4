package handlers

import (
	"crypto/sha256"
	"math"
	"sync"
	"time"
)

// rateLimiter is Config.RateLimit: a token bucket per API key (by the
// key's SHA-256, never the key itself), filled at rate tokens a second up
// to burst; a request takes one token, and one that finds none is refused
// with the time until there will be one.
//
// Only keys that resolved to a user get a bucket (see authenticated): an
// unknown key is answered 401 before it reaches the limiter, so random
// keys cannot fill the map, and each bucket belongs to a real user.
//
// Memory is bounded twice over: a bucket idle long enough to be full again
// is the same as no bucket and is dropped by a sweep (at most every
// sweepEvery, amortised over the requests); and the map never holds more
// than maxBuckets, the stalest bucket giving way to a new one when it is
// full of active ones (which can only happen with more than maxBuckets
// users busy at once, and then costs a reset bucket, never a refusal).
type rateLimiter struct {
	rate  float64       // tokens a second
	burst float64       // bucket size: max(1, ceil(rate))
	full  time.Duration // how long an empty bucket takes to fill

	now        func() time.Time // time.Now; a test's clock
	maxBuckets int
	sweepEvery time.Duration

	mu        sync.Mutex
	buckets   map[[sha256.Size]byte]*tokenBucket
	lastSweep time.Time
}

type tokenBucket struct {
	tokens float64   // as of last
	last   time.Time // when tokens was last brought up to date
}

// defaultMaxBuckets bounds the limiter's map: 100,000 buckets are about
// 10 MB.
const defaultMaxBuckets = 100_000

// newRateLimiter returns the limiter for rate requests a second per key,
// or nil (no limit) for a rate of 0 or less. The burst is max(1,
// ceil(rate)): a key may send one second's worth of requests at once, and
// at least one request whatever the rate (at 0.5 a second, one request,
// then one every 2 s).
func newRateLimiter(rate float64) *rateLimiter {
	if !(rate > 0) || math.IsInf(rate, 0) {
		return nil
	}
	burst := max(1, math.Ceil(rate))
	full := time.Duration(burst / rate * float64(time.Second))
	return &rateLimiter{
		rate: rate, burst: burst, full: full,
		now: time.Now, maxBuckets: defaultMaxBuckets, sweepEvery: max(full, time.Minute),
		buckets: map[[sha256.Size]byte]*tokenBucket{},
	}
}

// allow takes a token from the bucket of the key whose SHA-256 is hash. When
// the bucket is empty it takes nothing and says how long until it holds a
// token again.
func (l *rateLimiter) allow(hash [sha256.Size]byte) (ok bool, retryAfter time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.sweepEvery {
		l.sweep(now)
	}
	b := l.buckets[hash]
	if b == nil {
		if len(l.buckets) >= l.maxBuckets {
			l.sweep(now)
			if len(l.buckets) >= l.maxBuckets {
				l.evictStalest()
			}
		}
		b = &tokenBucket{tokens: l.burst, last: now}
		l.buckets[hash] = b
	} else if elapsed := now.Sub(b.last); elapsed > 0 {
		// A clock that went backwards (only a test's can: time.Now is
		// monotonic) adds nothing.
		b.tokens = min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, max(wait, time.Nanosecond)
}

// sweep drops the buckets that have been idle long enough to be full: the
// next request of their key starts a full bucket, which is what it would
// have found.
func (l *rateLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for h, b := range l.buckets {
		if now.Sub(b.last) >= l.full {
			delete(l.buckets, h)
		}
	}
}

// evictStalest drops the bucket used longest ago.
func (l *rateLimiter) evictStalest() {
	var stalest [sha256.Size]byte
	var at time.Time
	first := true
	for h, b := range l.buckets {
		if first || b.last.Before(at) {
			stalest, at, first = h, b.last, false
		}
	}
	if !first {
		delete(l.buckets, stalest)
	}
}

// limiter is the Server's rate limiter, nil when Config.RateLimit is 0.
func (s *Server) limiter() *rateLimiter { return s.rl }

// size is how many buckets the limiter holds.
func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// retryAfterSeconds renders a wait as Retry-After's whole seconds, rounded
// up and at least 1 (a client that waits that long finds a token).
func retryAfterSeconds(wait time.Duration) int64 {
	return max(1, int64(math.Ceil(wait.Seconds())))
}
