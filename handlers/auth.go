package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/importer"
)

// authenticated resolves "Authorization: Bearer <key>" to a user of an MSP
// by the key's SHA-256 (keys are stored only as hashes) and runs next as
// that user. A missing or unknown key is 401.
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
