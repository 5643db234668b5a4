package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/catalog"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// statusOfCode is the one table from a domain code to an HTTP status.
var statusOfCode = map[domain.Code]int{
	domain.CodeNotFound:                 http.StatusNotFound,
	domain.CodeQuoteClosed:              http.StatusConflict,
	domain.CodeBaselineChanged:          http.StatusConflict,
	domain.CodeSeatsDecrease:            http.StatusUnprocessableEntity,
	domain.CodeInvalidSeats:             http.StatusUnprocessableEntity,
	domain.CodeUnknownProduct:           http.StatusUnprocessableEntity,
	domain.CodeUnknownTermType:          http.StatusUnprocessableEntity,
	domain.CodeUnknownCurrency:          http.StatusUnprocessableEntity,
	domain.CodeCurrencyMismatch:         http.StatusUnprocessableEntity,
	domain.CodeProductAlreadyPresent:    http.StatusUnprocessableEntity,
	domain.CodeProductNotOnSubscription: http.StatusUnprocessableEntity,
	domain.CodeProductNotAdded:          http.StatusUnprocessableEntity,
	domain.CodeNothingToReview:          http.StatusUnprocessableEntity,
	domain.CodeNotReviewed:              http.StatusUnprocessableEntity,
	domain.CodeAcknowledgementsMissing:  http.StatusUnprocessableEntity,
	domain.CodeInvalidCustomer:          http.StatusUnprocessableEntity,
	domain.CodeInvalidProduct:           http.StatusUnprocessableEntity,
}

// StatusFor maps an error to its HTTP status and the stable code of the
// problem response. Anything it does not know is a 500 "internal": the
// caller logs the cause and shows the client nothing of it.
func StatusFor(err error) (status int, code string) {
	var de *domain.Error
	var re *RequestError
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return http.StatusOK, ""
	case errors.As(err, &re):
		return re.Status, re.Code
	case errors.Is(err, errStateOnRead) && errors.As(err, &de):
		// A read the quote's state does not allow yet (the summary before
		// a review) is a conflict with that state, not a refused request.
		return http.StatusConflict, de.Code.String()
	case errors.Is(err, catalog.ErrCorrupt):
		return http.StatusInternalServerError, "internal" // the data is at fault, not the request
	case errors.As(err, &de):
		if s, ok := statusOfCode[de.Code]; ok {
			return s, de.Code.String()
		}
		return http.StatusUnprocessableEntity, de.Code.String()
	case errors.Is(err, app.ErrPreconditionFailed):
		return http.StatusPreconditionFailed, "precondition_failed"
	case errors.Is(err, eventstore.ErrVersionConflict):
		return http.StatusConflict, "version_conflict"
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer, but the log and
		// the metrics should not call it our error.
		return StatusClientClosedRequest, "client_closed_request"
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err), pgconn.SafeToRetry(err),
		errors.As(err, &pgErr) && isUnavailable(pgErr.Code), connectionLost(err):
		return http.StatusServiceUnavailable, "database_unavailable"
	}
	return http.StatusInternalServerError, "internal"
}

// StatusClientClosedRequest is the status logged for a request whose
// client disconnected before the answer (nginx's 499).
const StatusClientClosedRequest = 499

// connectionLost reports errors that mean the database could not be
// reached or the connection broke: no answer from the database at all.
func connectionLost(err error) bool {
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.Is(err, pgconn.ErrConnClosed) || errors.As(err, &netErr) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// RequestError is a request the API refuses before any business rule sees
// it: malformed JSON, an unknown field, a bad parameter, no identity, a
// reused idempotency key.
type RequestError struct {
	Status int
	Code   string
	// Field names the input at fault, when there is one.
	Field  string
	Detail string
}

func (e *RequestError) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Detail
	}
	return e.Detail
}

func badRequest(code, field, format string, args ...any) *RequestError {
	return &RequestError{Status: http.StatusBadRequest, Code: code, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// errStateOnRead marks a domain refusal met by a read (GET) rather than a
// command: see StatusFor.
var errStateOnRead = errors.New("not readable in the quote's current state")

// isUnavailable reports the SQLSTATEs that mean the database cannot serve
// the request right now, through no fault of the request: connection
// exceptions, shutdown, too many connections, and the server's own limits
// on a statement or session (a statement_timeout or lock_timeout that a
// DBA set, a statement an operator cancelled, a session ended for idling).
func isUnavailable(sqlstate string) bool {
	switch {
	case len(sqlstate) == 5 && sqlstate[:2] == "08": // connection exception
		return true
	case sqlstate == "57P01", sqlstate == "57P02", sqlstate == "57P03", sqlstate == "53300":
		return true
	case sqlstate == "57014", // query_canceled: statement_timeout, pg_cancel_backend
		sqlstate == "55P03", // lock_not_available: lock_timeout
		sqlstate == "25P03", // idle_in_transaction_session_timeout
		sqlstate == "57P05": // idle_session_timeout
		return true
	}
	return false
}
