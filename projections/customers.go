package projections

import (
	"context"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// Customers projects each customer's current subscription into
// customer_views, for the customer list and the customer detail. A Runner
// follows the log for it (imports append customers directly), and Inline
// applies commands' events in their own transaction.
type Customers struct{}

func (Customers) Name() string  { return "customers" }
func (Customers) Table() string { return "customer_views" }
func (Customers) Async() bool   { return true }

func (Customers) Apply(ctx context.Context, tx pgx.Tx, table pgx.Identifier, events []eventstore.Event) error {
	return customerRows.apply(ctx, tx, table, events)
}

func (Customers) rows() rowsOf { return customerRows }

// customerRows is a customer's row of customer_views.
var customerRows = withRow(&streamRows[*domain.Customer]{
	streamType: domain.StreamCustomer,
	columns: []string{"customer_id", "msp_id", "name", "sort_name", "initial", "currency", "total_users",
		"monthly_total", "version", "lines"},
	types: []string{"text", "text", "text", "text", "text", "text", "integer",
		"text", "bigint", "text"},
	key:     "customer_id",
	replay:  domain.ReplayCustomer,
	rowInto: customerRow,
})

// customerRow makes a customer's row; the lines' JSON (what json.Marshal
// makes of them) is appended to *buf.
func customerRow(buf *[]byte, c *domain.Customer, _ eventstore.Event) ([]any, error) {
	b := *buf
	start := len(b)
	b, err := domain.AppendPricedLinesJSON(b, c.PricedLines())
	if err != nil {
		return nil, err
	}
	*buf = b
	linesJSON := b[start:len(b):len(b)]
	// Lower-cased in Go, not by SQL's lower(), which depends on the
	// database's locale ("É" stays "É" in a C-locale database).
	return []any{c.ID(), c.MSPID(), c.Name(), strings.ToLower(c.Name()), Initial(c.Name()), c.Currency(),
		c.TotalUsers(), c.MonthlyTotal().String(), c.Version(), linesJSON}, nil
}

// Initial is the letter a name is filed under: its first letter without
// accents, upper-cased ("émile" and "Émile" under E), or "#" for a name that
// does not start with one of A to Z (a digit, a sign, another script).
func Initial(name string) string {
	r, _ := utf8.DecodeRuneInString(norm.NFD.String(strings.TrimSpace(name)))
	if r = unicode.ToUpper(r); r >= 'A' && r <= 'Z' {
		return string(r)
	}
	return "#"
}
