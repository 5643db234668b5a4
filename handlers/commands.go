package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// command is one quote command as the HTTP layer runs it.
type command struct {
	// body is what the request body decodes into; nil for a command with
	// no body (an empty body or {} is accepted).
	body any
	// check refuses a decoded body that misses a required field.
	check func() error
	run   func(ctx context.Context, m app.Meta) (app.Result, error)
	// answer is the response body of a success; {quote_id, version,
	// status} when nil.
	answer  func(app.Result) (any, error)
	created bool // 201 with Location, not 200
}

// quoteRef is the answer of most commands.
type quoteRef struct {
	QuoteID uuid.UUID     `json:"quote_id"`
	Version int64         `json:"version"`
	Status  domain.Status `json:"status"`
}

// exec runs a command: read and check the request, honour If-Match and
// Idempotency-Key, run it through the application layer with the caller as
// actor and the request id as correlation id, and answer. A refused command
// appended nothing.
func (s *Server) exec(w http.ResponseWriter, r *http.Request, c command) {
	ctx := r.Context()
	body, err := readBody(w, r)
	if err == nil {
		dst := c.body
		if dst == nil {
			dst = &struct{}{}
		}
		err = decodeStrict(body, dst)
	}
	if err == nil && c.check != nil {
		err = c.check()
	}
	var expected *int64
	if err == nil {
		expected, err = parseIfMatch(r.Header.Get("If-Match"))
	}
	var key *idempotency
	if err == nil {
		key, err = newIdempotency(r, body)
	}
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if key != nil {
		if s.replay(w, r, key) {
			return
		}
	}
	var resp *response
	meta := app.Meta{Actor: actorOf(ctx), CorrelationID: requestID(ctx), ExpectedVersion: expected}
	meta.InBatch = func(_ context.Context, b *pgx.Batch, res app.Result) error {
		var err error
		if resp, err = c.respond(res); err != nil {
			return err
		}
		if key != nil {
			return key.queue(b, resp)
		}
		return nil
	}
	res, err := c.run(ctx, meta)
	if err != nil && key != nil && s.replay(w, r, key) {
		// A concurrent request with the same key won: its events made this
		// one conflict (and decide again on its result), or its key made
		// this one roll back. Either way its response is the answer.
		return
	}
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if len(res.Events) == 0 {
		// The command changed nothing, so no transaction stored its key:
		// store it now, so that the key cannot serve another request.
		if resp, err = c.respond(res); err == nil && key != nil {
			err = key.store(ctx, s.Pool, resp)
		}
		if errors.Is(err, errKeyTaken) && s.replay(w, r, key) {
			return
		}
		if err != nil {
			s.problem(w, r, err)
			return
		}
	}
	s.afterAppend(res.Events)
	resp.write(w)
}

// replay answers with the response stored for the key, if any (or with
// the problem of a key reused for another request), and reports whether it
// answered.
func (s *Server) replay(w http.ResponseWriter, r *http.Request, key *idempotency) bool {
	stored, err := key.stored(r.Context(), s.Pool)
	switch {
	case err != nil:
		s.problem(w, r, err)
	case stored != nil:
		stored.write(w)
	default:
		return false
	}
	return true
}

func (c command) respond(res app.Result) (*response, error) {
	var v any = quoteRef{QuoteID: res.QuoteID, Version: res.Version, Status: res.Quote.Status()}
	if c.answer != nil {
		var err error
		if v, err = c.answer(res); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	resp := &response{Status: http.StatusOK, Body: append(b, '\n'), Headers: map[string]string{
		"Content-Type": "application/json",
		"ETag":         etag(res.Version),
	}}
	if c.created {
		resp.Status = http.StatusCreated
		resp.Headers["Location"] = "/v1/change-quotes/" + res.QuoteID.String()
	}
	return resp, nil
}

// afterAppend counts the appended events.
func (s *Server) afterAppend(events []eventstore.Event) {
	for _, e := range events {
		s.Metrics.eventsAppended.WithLabelValues(e.Type).Inc()
	}
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// parseIfMatch reads If-Match: "<version>" (a bare number is accepted too);
// "*" or none means any version.
func parseIfMatch(h string) (*int64, error) {
	h = strings.TrimSpace(h)
	if h == "" || h == "*" {
		return nil, nil
	}
	if strings.HasPrefix(h, "W/") {
		// If-Match compares strongly: a weak tag never matches.
		v := int64(-1)
		return &v, nil
	}
	// Entity tags compare exactly (RFC 9110): "3" is the only spelling of
	// version 3, not "03" or "+3".
	tag, quoted := strings.CutPrefix(h, `"`)
	tag, closed := strings.CutSuffix(tag, `"`)
	v, err := strconv.ParseInt(tag, 10, 64)
	if !quoted || !closed || err != nil || v < 0 || strconv.FormatInt(v, 10) != tag {
		return nil, badRequest("invalid_if_match", "If-Match", `must be the quote's ETag, e.g. "3"; got %s`, h)
	}
	return &v, nil
}

// quoteID reads the {quote_id} of the path; one that is not a UUID names
// no quote.
func quoteID(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("quote_id"))
	if err != nil {
		return uuid.Nil, &domain.Error{Code: domain.CodeNotFound, Detail: "change quote " + strconv.Quote(r.PathValue("quote_id")) + " not found"}
	}
	return id, nil
}

func (s *Server) openChangeQuote(w http.ResponseWriter, r *http.Request) {
	customerID := r.PathValue("customer_id")
	s.exec(w, r, command{
		created: true,
		run: func(ctx context.Context, m app.Meta) (app.Result, error) {
			return s.App.OpenChangeQuote(ctx, m, customerID)
		},
	})
}

// onQuote runs a command on the quote of the path.
func (s *Server) onQuote(w http.ResponseWriter, r *http.Request, c command,
	run func(ctx context.Context, m app.Meta, id uuid.UUID) (app.Result, error)) {
	id, err := quoteID(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	c.run = func(ctx context.Context, m app.Meta) (app.Result, error) { return run(ctx, m, id) }
	s.exec(w, r, c)
}

func (s *Server) addProduct(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ProductCode *string `json:"product_code"`
		TermType    *string `json:"term_type"`
		Seats       *int    `json:"seats"`
	}
	s.onQuote(w, r, command{body: &body, check: func() error {
		return errors.Join(required("product_code", body.ProductCode != nil),
			required("term_type", body.TermType != nil), required("seats", body.Seats != nil))
	}}, func(ctx context.Context, m app.Meta, id uuid.UUID) (app.Result, error) {
		return s.App.AddProduct(ctx, m, id, *body.ProductCode, *body.TermType, *body.Seats)
	})
}

func (s *Server) removeProduct(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("product_code")
	s.onQuote(w, r, command{}, func(ctx context.Context, m app.Meta, id uuid.UUID) (app.Result, error) {
		return s.App.RemoveProduct(ctx, m, id, code)
	})
}

func (s *Server) changeSeats(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ProductCode *string `json:"product_code"`
		TotalSeats  *int    `json:"total_seats"`
	}
	s.onQuote(w, r, command{body: &body, check: func() error {
		return errors.Join(required("product_code", body.ProductCode != nil), required("total_seats", body.TotalSeats != nil))
	}}, func(ctx context.Context, m app.Meta, id uuid.UUID) (app.Result, error) {
		return s.App.ChangeSeats(ctx, m, id, *body.ProductCode, *body.TotalSeats)
	})
}

func (s *Server) saveQuote(w http.ResponseWriter, r *http.Request) {
	s.onQuote(w, r, command{}, s.App.SaveQuote)
}

func (s *Server) cancelQuote(w http.ResponseWriter, r *http.Request) {
	s.onQuote(w, r, command{}, s.App.CancelQuote)
}

func (s *Server) reviewOrder(w http.ResponseWriter, r *http.Request) {
	s.onQuote(w, r, command{answer: func(res app.Result) (any, error) { return res.Quote.Summary() }}, s.App.ReviewOrder)
}

func (s *Server) acknowledge(w http.ResponseWriter, r *http.Request) {
	var body struct {
		MSAGovernsOrder   bool `json:"msa_governs_order"`
		AuthorizedToOrder bool `json:"authorized_to_order"`
	}
	s.onQuote(w, r, command{body: &body}, func(ctx context.Context, m app.Meta, id uuid.UUID) (app.Result, error) {
		return s.App.Acknowledge(ctx, m, id, body.MSAGovernsOrder, body.AuthorizedToOrder)
	})
}

func (s *Server) submitOrder(w http.ResponseWriter, r *http.Request) {
	s.onQuote(w, r, command{}, s.App.SubmitOrder)
}
