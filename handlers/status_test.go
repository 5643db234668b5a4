package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/catalog"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/handlers"
)

func TestStatusFor(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("handling the request: %w", err) }
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"seats decrease is a refused rule", wrap(&domain.Error{Code: domain.CodeSeatsDecrease, Detail: "x"}), 422, "seats_decrease"},
		{"nothing to review", &domain.Error{Code: domain.CodeNothingToReview}, 422, "nothing_to_review"},
		{"not reviewed", &domain.Error{Code: domain.CodeNotReviewed}, 422, "not_reviewed"},
		{"acknowledgements missing", &domain.Error{Code: domain.CodeAcknowledgementsMissing}, 422, "acknowledgements_missing"},
		{"unknown product", &domain.Error{Code: domain.CodeUnknownProduct}, 422, "unknown_product"},
		{"product already present", &domain.Error{Code: domain.CodeProductAlreadyPresent}, 422, "product_already_present"},
		{"closed quote is a conflict", wrap(&domain.Error{Code: domain.CodeQuoteClosed}), 409, "quote_closed"},
		{"baseline changed is a conflict", &domain.Error{Code: domain.CodeBaselineChanged}, 409, "baseline_changed"},
		{"not found", wrap(&domain.Error{Code: domain.CodeNotFound}), 404, "not_found"},
		{"If-Match mismatch", wrap(app.ErrPreconditionFailed), 412, "precondition_failed"},
		{"version conflict", wrap(&eventstore.VersionConflictError{StreamID: "s", Expected: 1, Actual: 2}), 409, "version_conflict"},
		{"database shutting down", wrap(&pgconn.PgError{Code: "57P01"}), 503, "database_unavailable"},
		{"connection refused", wrap(&pgconn.PgError{Code: "08006"}), 503, "database_unavailable"},
		{"timeout", wrap(context.DeadlineExceeded), 503, "database_unavailable"},
		{"a unique violation is not the client's business", wrap(&pgconn.PgError{Code: "23505"}), 500, "internal"},
		{"a corrupt stored catalog is the server's fault", wrap(fmt.Errorf("%w: %w", catalog.ErrCorrupt, &domain.Error{Code: domain.CodeInvalidProduct})), 500, "internal"},
		{"anything else is internal", errors.New("boom"), http.StatusInternalServerError, "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, code := handlers.StatusFor(tt.err)
			if status != tt.status || code != tt.code {
				t.Errorf("StatusFor(%v) = %d %q, want %d %q", tt.err, status, code, tt.status, tt.code)
			}
		})
	}
}
