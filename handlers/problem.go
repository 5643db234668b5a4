package handlers

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
)

// Problem is an RFC 9457 problem details object, with the stable code of
// API.md that a program switches on.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	Instance  string `json:"instance,omitempty"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// ProblemType is the type URI of a code's problems.
func ProblemType(code string) string { return "urn:upsell:problem:" + code }

// problem answers err as a problem. Causes of 500s are logged, never
// shown: the client sees only that the error is ours and its request id.
func (s *Server) problem(w http.ResponseWriter, r *http.Request, err error) {
	status, code := StatusFor(err)
	p := Problem{
		Type: ProblemType(code), Title: http.StatusText(status), Status: status, Code: code,
		Detail: err.Error(), Instance: r.URL.Path, RequestID: requestID(r.Context()),
	}
	var de *domain.Error
	var re *RequestError
	switch {
	case errors.As(err, &re):
		p.Field, p.Detail = re.Field, re.Detail
	case errors.As(err, &de) && status < 500:
		p.Field, p.Detail = de.Field, de.Detail
	}
	if p.Title == "" {
		p.Title = "Client Closed Request"
	}
	if p.Detail == "" {
		p.Detail = p.Title
	}
	switch {
	case re != nil || status == StatusClientClosedRequest:
		// Our own refusal (readyz's not_ready says why), or nobody listens.
	case status == http.StatusServiceUnavailable:
		s.Log.WarnContext(r.Context(), "database unavailable", "err", err, "request_id", p.RequestID, "path", r.URL.Path)
		p.Detail = "the database is unavailable; try again shortly"
		w.Header().Set("Retry-After", "1")
	case status >= 500:
		s.Log.ErrorContext(r.Context(), "request failed", "err", err, "request_id", p.RequestID, "path", r.URL.Path)
		p.Detail = "internal error; the server has logged it under request id " + p.RequestID
	}
	if pf := (*app.PreconditionFailedError)(nil); errors.As(err, &pf) {
		w.Header().Set("ETag", etag(pf.Actual)) // the version to send next
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="upsell"`)
	}
	writeJSONAs(w, "application/problem+json", status, p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeJSONAs(w, "application/json", status, v)
}

func writeJSONAs(w http.ResponseWriter, contentType string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encode response", "err", err)
		http.Error(w, `{"status":500,"code":"internal"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
