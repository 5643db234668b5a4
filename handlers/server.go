package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/projections"
)

// Config is what the API needs.
type Config struct {
	Pool    *pgxpool.Pool
	App     *app.Service
	Queries *projections.Queries
	Log     *slog.Logger
	Metrics *Metrics
	// Ready reports whether the service can serve (database reachable,
	// migrations current); /readyz answers 503 with its error.
	Ready func(ctx context.Context) error
	// RateLimit is how many requests per second one API key may send
	// (answered 429 with Retry-After beyond it); 0 means no limit.
	RateLimit float64
	// RequestTimeout bounds a request's work, its database calls included
	// (DefaultRequestTimeout when zero).
	RequestTimeout time.Duration
	// Keys answers authentication from memory while its Run listens for
	// changes of users (see KeyCache); nil: every request looks its API
	// key up in the database.
	Keys *KeyCache
}

// DefaultRequestTimeout bounds a request when Config.RequestTimeout is zero.
const DefaultRequestTimeout = 15 * time.Second

// Server is the HTTP API.
type Server struct {
	Config
	mux    *http.ServeMux
	routes []route
	rl     *rateLimiter // Config.RateLimit per key; nil: no limit
}

// route is one registered endpoint. Public routes need no API key.
type route struct {
	method, path string
	public       bool
	handle       http.HandlerFunc
}

// New returns the API on cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	s := &Server{Config: cfg, mux: http.NewServeMux(), rl: newRateLimiter(cfg.RateLimit)}
	s.routes = []route{
		{"GET", "/healthz", true, s.healthz},
		{"GET", "/readyz", true, s.readyz},
		{"GET", "/metrics", true, s.Metrics.handler().ServeHTTP},
		{"GET", "/openapi.json", true, serveOpenAPI},

		{"GET", "/v1/catalog/products", false, s.listProducts},
		{"GET", "/v1/customers", false, s.listCustomers},
		{"GET", "/v1/customers/{customer_id}", false, s.getCustomer},
		{"GET", "/v1/customers/{customer_id}/change-quotes", false, s.listQuotes},
		{"POST", "/v1/customers/{customer_id}/change-quotes", false, s.openChangeQuote},

		{"GET", "/v1/change-quotes/{quote_id}", false, s.getPreview},
		{"GET", "/v1/change-quotes/{quote_id}/preview", false, s.getPreview},
		{"GET", "/v1/change-quotes/{quote_id}/summary", false, s.getSummary},
		{"GET", "/v1/change-quotes/{quote_id}/events", false, s.listQuoteEvents},
		{"POST", "/v1/change-quotes/{quote_id}/products", false, s.addProduct},
		{"DELETE", "/v1/change-quotes/{quote_id}/products/{product_code}", false, s.removeProduct},
		{"PUT", "/v1/change-quotes/{quote_id}/seats", false, s.changeSeats},
		{"POST", "/v1/change-quotes/{quote_id}/save", false, s.saveQuote},
		{"POST", "/v1/change-quotes/{quote_id}/cancel", false, s.cancelQuote},
		{"POST", "/v1/change-quotes/{quote_id}/review", false, s.reviewOrder},
		{"POST", "/v1/change-quotes/{quote_id}/acknowledgements", false, s.acknowledge},
		{"POST", "/v1/change-quotes/{quote_id}/submit", false, s.submitOrder},
	}
	for _, rt := range s.routes {
		h := rt.handle
		if !rt.public {
			h = s.authenticated(h)
		}
		s.mux.Handle(rt.method+" "+rt.path, s.observed(rt.path, h))
	}
	return s
}

// Routes lists the registered routes as "METHOD /path/{param}".
func (s *Server) Routes() []string {
	out := make([]string, len(s.routes))
	for i, rt := range s.routes {
		out[i] = rt.method + " " + rt.path
	}
	return out
}

// ServeHTTP answers a request: a route of the API, else a problem (404 for
// an unknown path, 405 with Allow for a known path and another method).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	s.observed("unmatched", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := s.mux.Handler(probe); pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) == 0 {
			s.problem(w, r, &RequestError{Status: http.StatusNotFound, Code: "not_found", Detail: "no such resource: " + r.URL.Path})
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.problem(w, r, &RequestError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Detail: r.Method + " is not allowed here; allowed: " + strings.Join(allow, ", ")})
	})(w, r)
}

type ctxKey struct{}

// requestInfo is what the middleware learns about a request: its id, and
// once authenticated, who sent it.
type requestInfo struct {
	id    string
	actor domain.Actor
}

func info(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

func requestID(ctx context.Context) string { return info(ctx).id }

func actorOf(ctx context.Context) domain.Actor { return info(ctx).actor }

var errPanic = errors.New("handler panicked")

// validRequestID accepts a caller's X-Request-ID when it is short printable
// ASCII, so that it can go into logs and event metadata as it is.
func validRequestID(id string) bool { return printableToken(id, 128) }

// printableToken reports whether s is 1 to max printable ASCII characters
// without spaces.
func printableToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, c := range []byte(s) {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusRecorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// requestTimeout is the bound on one request's work.
func (s *Server) requestTimeout() time.Duration {
	if s.RequestTimeout > 0 {
		return s.RequestTimeout
	}
	return DefaultRequestTimeout
}

// observed gives the request its id (the caller's X-Request-ID, else a new
// one; echoed back) and its deadline (RequestTimeout: every database call
// of the request ends by then, and a call cut short is a 503), and logs and
// counts it once it is answered. Panics become 500 problems.
func (s *Server) observed(route string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-ID")
		if !validRequestID(id) {
			id = uuid.NewString()
		}
		w.Header().Set("X-Request-ID", id)
		ri := &requestInfo{id: id}
		ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), ctxKey{}, ri), s.requestTimeout())
		defer cancel()
		r = r.WithContext(ctx)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.Log.ErrorContext(ctx, "handler panicked", "panic", p, "request_id", id)
				if rec.status == 0 {
					s.problem(rec, r, errPanic)
				}
			}
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			elapsed := time.Since(start)
			s.Metrics.observeRequest(r.Method, route, rec.status, elapsed)
			actor := ri.actor
			attrs := make([]slog.Attr, 0, 9)
			attrs = append(attrs, slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", route),
				slog.Int("status", rec.status), slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
				slog.Int("bytes", rec.bytes), slog.String("request_id", id))
			if actor.UserID != "" {
				attrs = append(attrs, slog.String("msp_id", actor.MSPID), slog.String("user_id", actor.UserID))
			}
			s.Log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
		}()
		next(rec, r)
	}
}
