package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/importer"
)

// authenticated resolves "Authorization: Bearer <key>" to a user of an MSP
// by the key's SHA-256 (keys are stored only as hashes) and runs next as
// that user, within the key's rate limit (Config.RateLimit). A missing or
// unknown key is 401; a key over its limit is 429 with Retry-After.
//
// Neither the key nor its hash is ever logged: the hash is no secret in
// the sense that it cannot be sent in place of the key, but it names the
// key for good, and for a short key it is enough to find the key offline.
func (s *Server) authenticated(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := checkText(r); err != nil {
			s.problem(w, r, err)
			return
		}
		scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		key = strings.TrimSpace(key)
		if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
			s.problem(w, r, &RequestError{Status: http.StatusUnauthorized, Code: "unauthorized",
				Detail: "send your API key as Authorization: Bearer <key>"})
			return
		}
		hash := importer.HashAPIKey(key)
		actor, err := s.userOfKey(r, hash)
		if errors.Is(err, errUnknownKey) {
			// No bucket is spent on an unknown key: buckets are for users,
			// and keys an attacker makes up must not fill the limiter's
			// memory (nor could a bucket per made-up key slow a guesser,
			// who makes up a new key each time).
			s.problem(w, r, &RequestError{Status: http.StatusUnauthorized, Code: "unauthorized",
				Detail: "the API key is not known"})
			return
		}
		if err != nil {
			s.problem(w, r, fmt.Errorf("look up the API key: %w", err))
			return
		}
		ri := info(r.Context())
		ri.actor = actor // the request is logged as this user's, a refused one too
		if l := s.limiter(); l != nil {
			if ok, wait := l.allow([sha256.Size]byte(hash)); !ok {
				secs := retryAfterSeconds(wait)
				w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
				s.problem(w, r, &RequestError{Status: http.StatusTooManyRequests, Code: "rate_limited",
					Detail: fmt.Sprintf("this API key has used up its rate limit (%s requests a second); try again in %d s",
						strconv.FormatFloat(s.RateLimit, 'f', -1, 64), secs)})
				return
			}
		}
		next(w, r)
	}
}

// errUnknownKey is a key that belongs to no user.
var errUnknownKey = errors.New("unknown API key")

// userOfKey finds the user whose key has the SHA-256 hash: in the key
// cache (Config.Keys) when it is in use and holds the key, else in the
// database, whose answer the cache then keeps (a known key only: see
// KeyCache).
//
// The lookup is by the hash, through the unique index on api_key_hash (or
// the cache's map), and that comparison is not constant-time. It leaks
// nothing useful: what the time of an index probe could tell is how far
// the *hash* of the presented key agrees with the stored hashes, and a
// caller cannot steer the hash of a key towards a stored one (SHA-256 has
// no known way to make a hash with a chosen prefix but trying keys at
// random, which is guessing the key). A stored hash is also no credential:
// the key is. So the probe's timing reveals no more than the answer does.
//
// The stored hash is nevertheless selected (and cached) and compared again
// in constant time, so that accepting a key never rests on a comparison
// whose time depends on how many bytes agree: should the lookup ever
// change (a case-insensitive or collated comparison, a prefix index), no
// key is let in on a hash that merely resembles its own.
func (s *Server) userOfKey(r *http.Request, hash []byte) (domain.Actor, error) {
	actor, ticket, ok := s.Keys.lookup(hash)
	if ok {
		return actor, nil
	}
	var stored []byte
	err := s.Pool.QueryRow(r.Context(), `SELECT msp_id, id, api_key_hash FROM msp_users WHERE api_key_hash = $1`,
		hash).Scan(&actor.MSPID, &actor.UserID, &stored)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return domain.Actor{}, errUnknownKey
	case err != nil:
		return domain.Actor{}, err
	case !sameKeyHash(stored, hash):
		return domain.Actor{}, errUnknownKey
	}
	s.Keys.store(ticket, stored, actor)
	return actor, nil
}

// sameKeyHash reports whether two key hashes are equal, in a time that
// does not depend on their contents (only on their length, which is
// always sha256.Size).
func sameKeyHash(stored, presented []byte) bool {
	return len(presented) == sha256.Size && subtle.ConstantTimeCompare(stored, presented) == 1
}

// checkText refuses a path or query that is not valid UTF-8 or holds a NUL:
// PostgreSQL text cannot hold them, so no id or search can match them. A
// path names nothing (404); a parameter is refused (400).
func checkText(r *http.Request) error {
	if !cleanText(r.URL.Path) {
		return &RequestError{Status: http.StatusNotFound, Code: "not_found", Detail: "no such resource"}
	}
	for name, values := range r.URL.Query() {
		for _, v := range values {
			if !cleanText(name) || !cleanText(v) {
				return badRequest("invalid_parameter", name, "must be valid UTF-8 text without NUL characters")
			}
		}
	}
	return nil
}

func cleanText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
