package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// Quotes projects each change quote's Preview Change Quote and Change Order
// Summary into quote_views. It runs inline (see Inline).
type Quotes struct{}

func (Quotes) Name() string  { return "quotes" }
func (Quotes) Table() string { return "quote_views" }
func (Quotes) Async() bool   { return false }

func (Quotes) Apply(ctx context.Context, tx pgx.Tx, table pgx.Identifier, events []eventstore.Event) error {
	b := &pgx.Batch{}
	sql := `INSERT INTO ` + table.Sanitize() + ` AS v
    (quote_id, msp_id, customer_id, status, version, updated_at, new_monthly_total, preview, summary)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (quote_id) DO UPDATE SET
    msp_id = EXCLUDED.msp_id, customer_id = EXCLUDED.customer_id, status = EXCLUDED.status,
    version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
    new_monthly_total = EXCLUDED.new_monthly_total, preview = EXCLUDED.preview, summary = EXCLUDED.summary
WHERE v.version < EXCLUDED.version`
	for _, s := range byStream(events, domain.StreamChangeQuote) {
		q, err := stateOf(ctx, tx, s, domain.ReplayChangeQuote)
		if err != nil {
			return fmt.Errorf("project quote %s: %w", s.id, err)
		}
		preview := q.Preview()
		previewJSON, err := json.Marshal(preview)
		if err != nil {
			return fmt.Errorf("project quote %s: %w", s.id, err)
		}
		var summaryJSON []byte // SQL null while not reviewed
		switch summary, err := q.Summary(); {
		case err == nil:
			if summaryJSON, err = json.Marshal(summary); err != nil {
				return fmt.Errorf("project quote %s: %w", s.id, err)
			}
		case !errors.Is(err, domain.ErrNotReviewed):
			return fmt.Errorf("project quote %s: %w", s.id, err)
		}
		last := s.events[len(s.events)-1]
		b.Queue(sql, q.ID(), q.MSPID(), q.CustomerID(), q.Status().String(), last.Version, last.RecordedAt,
			preview.NewMonthlyTotal.String(), previewJSON, summaryJSON)
	}
	if err := upsertAll(ctx, tx, b); err != nil {
		return fmt.Errorf("project quotes into %s: %w", table.Sanitize(), err)
	}
	return nil
}
