package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// keyUsers imports an MSP of the test's own with n users and returns the
// pool, the MSP's id and the users' API keys (user i is "u<i>").
func keyUsers(t *testing.T, n int) (*pgxpool.Pool, string, []string) {
	t.Helper()
	pool := testdb.Pool(t, "handlers")
	msp, keys := importKeyUsers(t, pool, n)
	return pool, msp, keys
}

// importKeyUsers is keyUsers on the database of pool.
func importKeyUsers(t *testing.T, pool *pgxpool.Pool, n int) (string, []string) {
	t.Helper()
	sfx := strings.ReplaceAll(uuid.NewString(), "-", "")
	msp := importer.MSP{ID: "msp-auth-" + sfx[:10], Name: "Auth Test MSP"}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("ak-%d-%s", i, sfx)
		msp.Users = append(msp.Users, importer.User{ID: fmt.Sprintf("u%d", i), Name: fmt.Sprintf("User %d", i), APIKey: keys[i]})
	}
	f := &importer.File{MSPs: []importer.MSP{msp}}
	if _, err := importer.Import(context.Background(), eventstore.New(pool), f, domain.SystemClock{}); err != nil {
		t.Fatalf("import the test's users: %v", err)
	}
	return msp.ID, keys
}

func TestSameKeyHash(t *testing.T) {
	t.Parallel()
	h := importer.HashAPIKey("nw-alex-5f2c9e1d7a")
	flip := func(i int) []byte {
		b := append([]byte(nil), h...)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name              string
		stored, presented []byte
		want              bool
	}{
		{"equal", h, append([]byte(nil), h...), true},
		{"first byte differs", h, flip(0), false},
		{"last byte differs", h, flip(sha256.Size - 1), false},
		{"presented is a prefix", h, h[:sha256.Size-1], false},
		{"stored is a prefix", h[:sha256.Size-1], h, false},
		{"presented is longer", h, append(append([]byte(nil), h...), 0), false},
		{"both empty", nil, nil, false}, // equal, but no hash of a key
		{"both the same short value", h[:4], h[:4], false},
		{"another key", h, importer.HashAPIKey("nw-alex-5f2c9e1d7b"), false},
	}
	for _, tt := range tests {
		if got := sameKeyHash(tt.stored, tt.presented); got != tt.want {
			t.Errorf("%s: sameKeyHash = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestAuthenticatedResolvesOnlyTheExactKey runs the middleware alone on the
// real database: the exact key (whatever the case of "Bearer" and the
// spaces around the key) is its user; anything else, however close, is
// 401 and never reaches the handler, and the request is not attributed to
// anybody.
func TestAuthenticatedResolvesOnlyTheExactKey(t *testing.T) {
	t.Parallel()
	pool, msp, keys := keyUsers(t, 2)
	key := keys[0]
	s := &Server{Config: Config{Pool: pool, Log: slog.New(slog.DiscardHandler), Metrics: NewMetrics(nil)}}
	var reached domain.Actor
	h := s.observed("/test", s.authenticated(func(w http.ResponseWriter, r *http.Request) {
		reached = actorOf(r.Context())
		writeJSON(w, http.StatusOK, reached)
	}))
	send := func(authorization string) (int, http.Header, domain.Actor) {
		t.Helper()
		reached = domain.Actor{}
		req := httptest.NewRequest("GET", "/test", nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		rec := httptest.NewRecorder()
		h(rec, req)
		return rec.Code, rec.Header(), reached
	}

	for _, auth := range []string{"Bearer " + key, "bearer " + key, "BEARER " + key, "Bearer   " + key + "  ", "Bearer " + key + "\t"} {
		code, _, actor := send(auth)
		if code != http.StatusOK || actor != (domain.Actor{MSPID: msp, UserID: "u0"}) {
			t.Errorf("Authorization %q: %d as %+v, want 200 as u0 of %s", auth, code, actor, msp)
		}
	}
	if code, _, actor := send("Bearer " + keys[1]); code != http.StatusOK || actor.UserID != "u1" {
		t.Errorf("the second user's key: %d as %+v, want 200 as u1", code, actor)
	}

	last := key[len(key)-1]
	nearMisses := []string{
		key[:len(key)-1],                            // a character short
		key + "0",                                   // a character more
		key[:len(key)-1] + string(last^1),           // the last character changed
		string(key[0]^1) + key[1:],                  // the first character changed
		strings.ToUpper(key),                        // another case
		key[:len(key)/2],                            // a prefix
		string(importer.HashAPIKey(key)),            // the stored hash, as bytes
		fmt.Sprintf("%x", importer.HashAPIKey(key)), // the stored hash, in hex
		key + " " + key,                             // twice
	}
	for _, k := range nearMisses {
		code, hdr, actor := send("Bearer " + k)
		if code != http.StatusUnauthorized || actor != (domain.Actor{}) {
			t.Errorf("key %q: %d as %+v, want 401 reaching nobody", k, code, actor)
		}
		if hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("key %q: a 401 without WWW-Authenticate", k)
		}
	}
	for _, auth := range []string{key, "Basic " + key, "Bearer", "Bearer ", "Token " + key, ""} {
		if code, _, actor := send(auth); code != http.StatusUnauthorized || actor != (domain.Actor{}) {
			t.Errorf("Authorization %q: %d as %+v, want 401 reaching nobody", auth, code, actor)
		}
	}
}

// TestUnknownKeyProblem checks the 401's body: a problem that says what
// is wrong and echoes nothing of the key.
func TestUnknownKeyProblem(t *testing.T) {
	t.Parallel()
	pool, _, keys := keyUsers(t, 1)
	s := &Server{Config: Config{Pool: pool, Log: slog.New(slog.DiscardHandler), Metrics: NewMetrics(nil)}}
	h := s.observed("/test", s.authenticated(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	wrong := keys[0] + "x"
	req := httptest.NewRequest("GET", "/test", nil)
	req.Header.Set("Authorization", "Bearer "+wrong)
	rec := httptest.NewRecorder()
	h(rec, req)
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || rec.Code != http.StatusUnauthorized {
		t.Fatalf("%d %s (%v), want a 401 problem", rec.Code, rec.Body, err)
	}
	if p.Code != "unauthorized" || p.Status != http.StatusUnauthorized || p.Detail == "" {
		t.Errorf("problem %+v", p)
	}
	if strings.Contains(rec.Body.String(), keys[0]) {
		t.Errorf("the problem echoes the key: %s", rec.Body)
	}
}
