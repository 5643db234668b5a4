package handlers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// MaxIdempotencyKey is the longest Idempotency-Key accepted.
const MaxIdempotencyKey = 255

// response is a command's answer, kept whole so that an idempotent replay
// can give it again byte for byte.
type response struct {
	Status  int               `json:"-"`
	Headers map[string]string `json:"headers"`
	Body    []byte            `json:"-"`
}

func (resp *response) write(w http.ResponseWriter) {
	for k, v := range resp.Headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// idempotency is a command request's Idempotency-Key and what identifies
// the request: the same key with another request is refused.
type idempotency struct {
	actor domain.Actor
	key   string
	hash  []byte
}

// errKeyTaken means a concurrent request with the same key committed first.
var errKeyTaken = errors.New("the idempotency key was used by a concurrent request")

func newIdempotency(r *http.Request, body []byte) (*idempotency, error) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return nil, nil
	}
	if !printableToken(key, MaxIdempotencyKey) {
		return nil, badRequest("invalid_idempotency_key", "Idempotency-Key",
			"must be 1 to %d printable ASCII characters without spaces", MaxIdempotencyKey)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", r.Method, r.URL.Path)
	h.Write(canonicalJSON(body))
	return &idempotency{actor: actorOf(r.Context()), key: key, hash: h.Sum(nil)}, nil
}

// stored returns the response first given to the key, or nil when the key
// is new. The same key with another request is idempotency_key_reused.
func (k *idempotency) stored(ctx context.Context, db eventstore.DBTX) (*response, error) {
	var resp response
	var hash, headers []byte
	err := db.QueryRow(ctx, `SELECT request_hash, status, headers, body FROM idempotency_keys
WHERE msp_id = $1 AND user_id = $2 AND key = $3`, k.actor.MSPID, k.actor.UserID, k.key).
		Scan(&hash, &resp.Status, &headers, &resp.Body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	if !bytes.Equal(hash, k.hash) {
		return nil, &RequestError{Status: http.StatusUnprocessableEntity, Code: "idempotency_key_reused",
			Field: "Idempotency-Key", Detail: "this key was already used with another request; use a new key for a new request"}
	}
	if err := json.Unmarshal(headers, &resp.Headers); err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	resp.Headers["Idempotent-Replayed"] = "true"
	return &resp, nil
}

// storeKeySQL records a key's response.
const storeKeySQL = `INSERT INTO idempotency_keys (msp_id, user_id, key, request_hash, status, headers, body)
VALUES ($1, $2, $3, $4, $5, $6, $7)`

// queue records the response in the transaction that appends the events,
// on the batch that carries the append and its COMMIT. A concurrent request
// that stored the key first makes the insert fail (a unique violation),
// which stops the commit: this request's events are not recorded, and the
// caller answers with that request's response (see exec).
func (k *idempotency) queue(b *pgx.Batch, resp *response) error {
	headers, err := json.Marshal(resp.Headers)
	if err != nil {
		return err
	}
	b.Queue(storeKeySQL, k.actor.MSPID, k.actor.UserID, k.key, k.hash, resp.Status, headers, resp.Body)
	return nil
}

// store records the response of a command that appended nothing, so that
// the key cannot serve another request. A concurrent request that stored
// the key first makes it errKeyTaken.
func (k *idempotency) store(ctx context.Context, db eventstore.DBTX, resp *response) error {
	headers, err := json.Marshal(resp.Headers)
	if err != nil {
		return err
	}
	tag, err := db.Exec(ctx, storeKeySQL+` ON CONFLICT DO NOTHING`,
		k.actor.MSPID, k.actor.UserID, k.key, k.hash, resp.Status, headers, resp.Body)
	if err != nil {
		return fmt.Errorf("store idempotency key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return errKeyTaken
	}
	return nil
}

// DefaultIdempotencyTTL is how long a key's response is kept for replay.
const DefaultIdempotencyTTL = 24 * time.Hour

// PurgeIdempotencyKeys deletes the keys stored before now - ttl and says
// how many there were. A request with a purged key runs again.
func PurgeIdempotencyKeys(ctx context.Context, db eventstore.DBTX, ttl time.Duration) (int64, error) {
	tag, err := db.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval`, ttl)
	if err != nil {
		return 0, fmt.Errorf("purge idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
