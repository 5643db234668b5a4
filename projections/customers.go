package projections

import (
	"context"
	"encoding/json"
	"fmt"
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
	b := &pgx.Batch{}
	sql := `INSERT INTO ` + table.Sanitize() + ` AS v
    (customer_id, msp_id, name, sort_name, initial, currency, total_users, monthly_total, version, lines)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (customer_id) DO UPDATE SET
    msp_id = EXCLUDED.msp_id, name = EXCLUDED.name, sort_name = EXCLUDED.sort_name,
    initial = EXCLUDED.initial, currency = EXCLUDED.currency, total_users = EXCLUDED.total_users,
    monthly_total = EXCLUDED.monthly_total, version = EXCLUDED.version, lines = EXCLUDED.lines
WHERE v.version < EXCLUDED.version`
	for _, s := range byStream(events, domain.StreamCustomer) {
		c, err := stateOf(ctx, tx, s, domain.ReplayCustomer)
		if err != nil {
			return fmt.Errorf("project customer %s: %w", s.id, err)
		}
		linesJSON, err := json.Marshal(c.PricedLines())
		if err != nil {
			return fmt.Errorf("project customer %s: %w", s.id, err)
		}
		// Lower-cased in Go, not by SQL's lower(), which depends on the
		// database's locale ("É" stays "É" in a C-locale database).
		b.Queue(sql, c.ID(), c.MSPID(), c.Name(), strings.ToLower(c.Name()), Initial(c.Name()), c.Currency(), c.TotalUsers(), c.MonthlyTotal().String(),
			c.Version(), linesJSON)
	}
	if err := upsertAll(ctx, tx, b); err != nil {
		return fmt.Errorf("project customers into %s: %w", table.Sanitize(), err)
	}
	return nil
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
