package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/upsell-dev/upsell/audit"
	"github.com/upsell-dev/upsell/catalog"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/projections"
)

func (s *Server) listProducts(w http.ResponseWriter, r *http.Request) {
	products, err := catalog.Products(r.Context(), s.Pool)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"products": products})
}

// DefaultCustomerPage is the page size of the customer list without limit.
const DefaultCustomerPage = 50

func (s *Server) listCustomers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := projections.CustomerFilter{Query: q.Get("q"), Letter: strings.ToUpper(q.Get("letter")), Limit: DefaultCustomerPage, Cursor: q.Get("cursor")}
	if l := q.Get("letter"); l != "" && !(len(f.Letter) == 1 && (f.Letter == "#" || f.Letter[0] >= 'A' && f.Letter[0] <= 'Z')) {
		s.problem(w, r, badRequest("invalid_parameter", "letter", "must be one letter A to Z, or # (as %%23), not %q", l))
		return
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > projections.MaxCustomerPage {
			s.problem(w, r, badRequest("invalid_parameter", "limit", "must be a whole number from 1 to %d, not %q", projections.MaxCustomerPage, l))
			return
		}
		f.Limit = n
	}
	page, err := s.Queries.Customers(r.Context(), actorOf(r.Context()).MSPID, f)
	if errors.Is(err, projections.ErrInvalidCursor) {
		err = badRequest("invalid_cursor", "cursor", "%v", err)
	}
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) getCustomer(w http.ResponseWriter, r *http.Request) {
	c, err := s.Queries.Customer(r.Context(), actorOf(r.Context()).MSPID, r.PathValue("customer_id"))
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) listQuotes(w http.ResponseWriter, r *http.Request) {
	var status *domain.Status
	if word := r.URL.Query().Get("status"); word != "" {
		st, err := domain.ParseStatus(word)
		if err != nil {
			s.problem(w, r, badRequest("invalid_parameter", "status", "must be one of draft, saved, reviewed, submitted, cancelled; not %q", word))
			return
		}
		status = &st
	}
	quotes, err := s.Queries.Quotes(r.Context(), actorOf(r.Context()).MSPID, r.PathValue("customer_id"), status)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if quotes == nil {
		quotes = []projections.QuoteItem{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"quotes": quotes})
}

// getPreview answers the Preview Change Quote: from the read model, or with
// as_of_version or as_of, rebuilt from the quote's events as it stood then.
func (s *Server) getPreview(w http.ResponseWriter, r *http.Request) {
	id, err := quoteID(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	opts, asOf, err := asOfOptions(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	actor := actorOf(r.Context())
	if !asOf {
		p, err := s.Queries.Preview(r.Context(), actor.MSPID, id)
		if err != nil {
			s.problem(w, r, err)
			return
		}
		s.writeQuoteView(w, r, p.Version, p)
		return
	}
	q, err := s.App.LoadQuote(r.Context(), actor, id, opts)
	if err == nil && opts.UpToVersion > 0 && q.Version() < opts.UpToVersion {
		err = &domain.Error{Code: domain.CodeNotFound, Detail: fmt.Sprintf("change quote %s has no version %d; it is at version %d", id, opts.UpToVersion, q.Version())}
	}
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) && !opts.UpTo.IsZero() {
			err = &domain.Error{Code: domain.CodeNotFound, Detail: fmt.Sprintf("change quote %s did not exist at %s", id, opts.UpTo.Format(time.RFC3339Nano))}
		}
		s.problem(w, r, err)
		return
	}
	p := q.Preview()
	w.Header().Set("ETag", etag(p.Version))
	writeJSON(w, http.StatusOK, p)
}

// asOfOptions reads the time-travel parameters of the preview: at most one
// of as_of_version (a version, from 1) and as_of (an RFC 3339 time).
func asOfOptions(r *http.Request) (opts eventstore.LoadOptions, asOf bool, err error) {
	q := r.URL.Query()
	v, t := q.Get("as_of_version"), q.Get("as_of")
	switch {
	case v != "" && t != "":
		return opts, false, badRequest("invalid_parameter", "as_of", "give as_of_version or as_of, not both")
	case v != "":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return opts, false, badRequest("invalid_parameter", "as_of_version", "must be a version number from 1, not %q", v)
		}
		opts.UpToVersion = n
	case t != "":
		at, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return opts, false, badRequest("invalid_parameter", "as_of", "must be an RFC 3339 time such as 2026-11-25T13:00:00Z, not %q", t)
		}
		if at.IsZero() {
			// The zero time means "no limit" to the store; the first
			// instant there is comes before every quote just the same.
			at = at.Add(time.Nanosecond)
		}
		opts.UpTo = at
	default:
		return opts, false, nil
	}
	return opts, true, nil
}

func (s *Server) getSummary(w http.ResponseWriter, r *http.Request) {
	id, err := quoteID(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	sum, version, err := s.Queries.Summary(r.Context(), actorOf(r.Context()).MSPID, id)
	if errors.Is(err, domain.ErrNotReviewed) {
		w.Header().Set("ETag", etag(version))
		err = fmt.Errorf("%w: %w", errStateOnRead, err)
	}
	if err != nil {
		s.problem(w, r, err)
		return
	}
	s.writeQuoteView(w, r, sum.Version, sum)
}

// writeQuoteView answers a quote read model with its version as ETag, or
// 304 when the caller already has that version (If-None-Match).
func (s *Server) writeQuoteView(w http.ResponseWriter, r *http.Request, version int64, v any) {
	tag := etag(version)
	w.Header().Set("ETag", tag)
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, t := range strings.Split(inm, ",") {
			t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
			if t == tag || t == "*" {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) listQuoteEvents(w http.ResponseWriter, r *http.Request) {
	id, err := quoteID(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	stored, err := s.App.QuoteHistory(r.Context(), actorOf(r.Context()), id, eventstore.LoadOptions{})
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := make([]audit.Event, len(stored))
	for i, e := range stored {
		out[i] = audit.NewEvent(e)
	}
	w.Header().Set("ETag", etag(int64(len(stored))))
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
}
