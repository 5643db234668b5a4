package projections

import (
	"context"
	"errors"

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
	return quoteRows.apply(ctx, tx, table, events)
}

func (Quotes) rows() rowsOf { return quoteRows }

// quoteRows is a quote's row of quote_views.
var quoteRows = withRow(&streamRows[*domain.ChangeQuote]{
	streamType: domain.StreamChangeQuote,
	columns: []string{"quote_id", "msp_id", "customer_id", "status", "version", "updated_at",
		"new_monthly_total", "preview", "summary"},
	types: []string{"uuid", "text", "text", "text", "bigint", "timestamptz",
		"text", "text", "text"},
	key:     "quote_id",
	replay:  domain.ReplayChangeQuote,
	rowInto: quoteRow,
	// A submitted or cancelled quote takes no more commands: a rebuild
	// writes its row as soon as its fold closes it (see earlyRows).
	closed: func(q *domain.ChangeQuote) bool { return q.Status().Closed() },
})

// quoteRow makes a quote's row; the preview's and the summary's JSON (what
// json.Marshal makes of them) are appended to *buf.
func quoteRow(buf *[]byte, q *domain.ChangeQuote, last eventstore.Event) ([]any, error) {
	preview := q.Preview()
	b := *buf
	start := len(b)
	b, err := preview.AppendJSON(b)
	if err != nil {
		return nil, err
	}
	previewJSON := b[start:len(b):len(b)]
	var summaryJSON []byte // SQL null while not reviewed
	switch summary, err := q.Summary(); {
	case err == nil:
		start = len(b)
		if b, err = summary.AppendJSON(b); err != nil {
			return nil, err
		}
		summaryJSON = b[start:len(b):len(b)]
	case !errors.Is(err, domain.ErrNotReviewed):
		return nil, err
	}
	*buf = b
	return []any{q.ID(), q.MSPID(), q.CustomerID(), q.Status().String(), last.Version, last.RecordedAt,
		preview.NewMonthlyTotal.String(), previewJSON, summaryJSON}, nil
}
