package handlers

import (
	"context"
	_ "embed"
	"errors"
	"net/http"
	"time"
)

// OpenAPI is the OpenAPI 3.1 description of the API, served at
// /openapi.json; a test keeps it and the routes in step.
//
//go:embed openapi.json
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
}

// ReadinessError is a reason not to be ready that may be shown to anyone,
// such as pending migrations.
type ReadinessError struct{ Reason string }

func (e *ReadinessError) Error() string { return e.Reason }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if s.Ready != nil {
		if err := s.Ready(ctx); err != nil {
			// The endpoint needs no key: log the cause, say only what is
			// not ready (a ReadinessError's words, else the database).
			s.Log.WarnContext(r.Context(), "not ready", "err", err)
			detail := "the database does not answer"
			var re *ReadinessError
			if errors.As(err, &re) {
				detail = re.Reason
			}
			s.problem(w, r, &RequestError{Status: http.StatusServiceUnavailable, Code: "not_ready", Detail: detail})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
