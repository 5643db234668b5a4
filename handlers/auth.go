package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/importer"
)

// authenticated resolves "Authorization: Bearer <key>" to a user of an MSP
// by the key's SHA-256 (keys are stored only as hashes) and runs next as
// that user. A missing or unknown key is 401.
func (s *Server) authenticated(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		key = strings.TrimSpace(key)
		if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
			s.problem(w, r, &RequestError{Status: http.StatusUnauthorized, Code: "unauthorized",
				Detail: "send your API key as Authorization: Bearer <key>"})
			return
		}
		ri := info(r.Context())
		err := s.Pool.QueryRow(r.Context(), `SELECT msp_id, id FROM msp_users WHERE api_key_hash = $1`,
			importer.HashAPIKey(key)).Scan(&ri.actor.MSPID, &ri.actor.UserID)
		if errors.Is(err, pgx.ErrNoRows) {
			s.problem(w, r, &RequestError{Status: http.StatusUnauthorized, Code: "unauthorized",
				Detail: "the API key is not known"})
			return
		}
		if err != nil {
			s.problem(w, r, fmt.Errorf("look up the API key: %w", err))
			return
		}
		next(w, r)
	}
}
