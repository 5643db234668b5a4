package domain

import "fmt"

// Code is a stable, snake_case word that names why a command was refused.
// Programs switch on it; the HTTP layer maps it to a status in one place.
// It is a closed set: only this package declares codes.
type Code struct{ s string }

// String returns the code's word, e.g. "seats_decrease".
func (c Code) String() string { return c.s }

// The codes. Those that the HTTP contract names keep its exact words.
var (
	// The request is well formed but a business rule refuses it.
	CodeSeatsDecrease            = Code{"seats_decrease"}
	CodeInvalidSeats             = Code{"invalid_seats"}
	CodeUnknownProduct           = Code{"unknown_product"}
	CodeUnknownTermType          = Code{"unknown_term_type"}
	CodeUnknownCurrency          = Code{"unknown_currency"}
	CodeCurrencyMismatch         = Code{"currency_mismatch"}
	CodeProductAlreadyPresent    = Code{"product_already_present"}
	CodeProductNotOnSubscription = Code{"product_not_on_subscription"}
	CodeProductNotAdded          = Code{"product_not_added"}
	CodeNothingToReview          = Code{"nothing_to_review"}
	CodeNotReviewed              = Code{"not_reviewed"}
	CodeAcknowledgementsMissing  = Code{"acknowledgements_missing"}
	CodeInvalidCustomer          = Code{"invalid_customer"}
	CodeInvalidProduct           = Code{"invalid_product"}

	// The command conflicts with the current state.
	CodeQuoteClosed     = Code{"quote_closed"}
	CodeBaselineChanged = Code{"baseline_changed"}

	// The thing does not exist (or belongs to another MSP).
	CodeNotFound = Code{"not_found"}
)

// Error is a refusal by a business rule. Field, when set, names the input at
// fault ("tiers[2].min_seats") so that callers can point at it.
type Error struct {
	Code   Code
	Field  string
	Detail string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Detail
	}
	return e.Detail
}

// Is matches any *Error with the same code, so errors.Is(err,
// domain.ErrSeatsDecrease) holds for every seats_decrease refusal.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Field == "" && t.Detail == ""
}

func newError(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

func fieldError(code Code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// Sentinels for errors.Is, one per code.
var (
	ErrSeatsDecrease            = &Error{Code: CodeSeatsDecrease}
	ErrInvalidSeats             = &Error{Code: CodeInvalidSeats}
	ErrUnknownProduct           = &Error{Code: CodeUnknownProduct}
	ErrUnknownTermType          = &Error{Code: CodeUnknownTermType}
	ErrUnknownCurrency          = &Error{Code: CodeUnknownCurrency}
	ErrCurrencyMismatch         = &Error{Code: CodeCurrencyMismatch}
	ErrProductAlreadyPresent    = &Error{Code: CodeProductAlreadyPresent}
	ErrProductNotOnSubscription = &Error{Code: CodeProductNotOnSubscription}
	ErrProductNotAdded          = &Error{Code: CodeProductNotAdded}
	ErrNothingToReview          = &Error{Code: CodeNothingToReview}
	ErrNotReviewed              = &Error{Code: CodeNotReviewed}
	ErrAcknowledgementsMissing  = &Error{Code: CodeAcknowledgementsMissing}
	ErrInvalidCustomer          = &Error{Code: CodeInvalidCustomer}
	ErrInvalidProduct           = &Error{Code: CodeInvalidProduct}
	ErrQuoteClosed              = &Error{Code: CodeQuoteClosed}
	ErrBaselineChanged          = &Error{Code: CodeBaselineChanged}
	ErrNotFound                 = &Error{Code: CodeNotFound}
)
