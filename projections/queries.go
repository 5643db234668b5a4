package projections

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// Queries reads the read models, always within one MSP: another MSP's
// customer or quote is not found.
type Queries struct {
	db eventstore.DBTX
}

// NewQueries reads through db (a pool, or a replica's pool).
func NewQueries(db eventstore.DBTX) *Queries { return &Queries{db: db} }

func notFound(format string, args ...any) error {
	return &domain.Error{Code: domain.CodeNotFound, Detail: fmt.Sprintf(format, args...)}
}

// Preview returns the Preview Change Quote of one of the MSP's quotes.
func (q *Queries) Preview(ctx context.Context, mspID string, quoteID uuid.UUID) (domain.Preview, error) {
	var p domain.Preview
	var raw []byte
	err := q.db.QueryRow(ctx, `SELECT preview FROM quote_views WHERE quote_id = $1 AND msp_id = $2`, quoteID, mspID).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, notFound("change quote %q not found", quoteID)
	}
	if err != nil {
		return p, fmt.Errorf("read the preview of quote %s: %w", quoteID, err)
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("read the preview of quote %s: %w", quoteID, err)
	}
	return p, nil
}

// Summary returns the Change Order Summary of one of the MSP's quotes; a
// quote not reviewed since its last change gives domain.ErrNotReviewed, and
// its current version.
func (q *Queries) Summary(ctx context.Context, mspID string, quoteID uuid.UUID) (domain.Summary, int64, error) {
	var s domain.Summary
	var raw []byte
	var version int64
	err := q.db.QueryRow(ctx, `SELECT summary, version FROM quote_views WHERE quote_id = $1 AND msp_id = $2`, quoteID, mspID).Scan(&raw, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, 0, notFound("change quote %q not found", quoteID)
	}
	if err != nil {
		return s, 0, fmt.Errorf("read the summary of quote %s: %w", quoteID, err)
	}
	if raw == nil {
		return s, version, &domain.Error{Code: domain.CodeNotReviewed,
			Detail: "the quote has not been reviewed since its last change: review it first"}
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, version, fmt.Errorf("read the summary of quote %s: %w", quoteID, err)
	}
	return s, version, nil
}

// QuoteItem is one quote in a customer's list of quotes.
type QuoteItem struct {
	QuoteID         uuid.UUID     `json:"quote_id"`
	Status          domain.Status `json:"status"`
	Version         int64         `json:"version"`
	UpdatedAt       time.Time     `json:"updated_at"`
	NewMonthlyTotal domain.Money  `json:"new_monthly_total"`
}

// Quotes lists the quotes of one of the MSP's customers, most recently
// changed first, all of them or those with one status.
func (q *Queries) Quotes(ctx context.Context, mspID, customerID string, status *domain.Status) ([]QuoteItem, error) {
	// The customer is checked on its events, not on customer_views, so a
	// customer imported a moment ago is already there.
	var exists bool
	if err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM events
WHERE stream_id = $1 AND version = 1 AND stream_type = $2 AND data->>'msp_id' = $3)`,
		customerID, domain.StreamCustomer, mspID).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read customer %q: %w", customerID, err)
	}
	if !exists {
		return nil, notFound("customer %q not found", customerID)
	}
	var statusWord *string
	if status != nil {
		w := status.String()
		statusWord = &w
	}
	rows, err := q.db.Query(ctx, `SELECT quote_id, status, version, updated_at, new_monthly_total FROM quote_views
WHERE msp_id = $1 AND customer_id = $2 AND ($3::text IS NULL OR status = $3)
ORDER BY updated_at DESC, quote_id`, mspID, customerID, statusWord)
	if err != nil {
		return nil, fmt.Errorf("list the quotes of customer %q: %w", customerID, err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (QuoteItem, error) {
		var it QuoteItem
		var st, total string
		if err := row.Scan(&it.QuoteID, &st, &it.Version, &it.UpdatedAt, &total); err != nil {
			return it, err
		}
		var err error
		if it.Status, err = domain.ParseStatus(st); err != nil {
			return it, err
		}
		it.UpdatedAt = it.UpdatedAt.UTC()
		it.NewMonthlyTotal, err = domain.ParseMoney(total)
		return it, err
	})
	if err != nil {
		return nil, fmt.Errorf("list the quotes of customer %q: %w", customerID, err)
	}
	return items, nil
}

// CustomerItem is one customer in the list.
type CustomerItem struct {
	ID           string       `json:"id"`
	Name         string       `json:"name"`
	TotalUsers   int          `json:"total_users"`
	MonthlyTotal domain.Money `json:"monthly_total"`
}

// CustomerPage is a page of the customer list; NextCursor is nil on the
// last page.
type CustomerPage struct {
	Customers  []CustomerItem `json:"customers"`
	NextCursor *string        `json:"next_cursor"`
}

// CustomerFilter selects and pages the customer list.
type CustomerFilter struct {
	// Query matches anywhere in the name, case-insensitively.
	Query string
	// Letter is "A" to "Z", or "#" for names that do not start with a
	// letter; empty for all.
	Letter string
	Limit  int
	// Cursor is a page's NextCursor, to read the page after it.
	Cursor string
}

// ErrInvalidCursor means a cursor that no page of the list gave.
var ErrInvalidCursor = errors.New("invalid cursor")

// MaxCustomerPage is the largest page of customers.
const MaxCustomerPage = 500

// Customers lists the MSP's customers sorted by name (case-insensitive),
// one page at a time: keyset pagination, so pages stay consistent while
// customers are added.
func (q *Queries) Customers(ctx context.Context, mspID string, f CustomerFilter) (CustomerPage, error) {
	if f.Limit < 1 || f.Limit > MaxCustomerPage {
		return CustomerPage{}, fmt.Errorf("limit %d is not between 1 and %d", f.Limit, MaxCustomerPage)
	}
	// The SQL names only the filters given, so that every shape of the
	// query gets its own plan on the (msp_id, [initial,] sort_name, id)
	// indexes; "$n IS NULL OR ..." would leave a generic plan scanning.
	args := []any{mspID}
	where := []string{"msp_id = $1"}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Letter != "" {
		where = append(where, "initial = "+arg(f.Letter))
	}
	if f.Query != "" {
		like := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(f.Query)) + "%"
		where = append(where, `sort_name LIKE `+arg(like)+` COLLATE "C"`)
	}
	if f.Cursor != "" {
		name, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return CustomerPage{}, err
		}
		where = append(where, `(sort_name, customer_id) > (`+arg(name)+`::text COLLATE "C", `+arg(id)+`::text)`)
	}
	rows, err := q.db.Query(ctx, `SELECT customer_id, name, sort_name, total_users, monthly_total FROM customer_views
WHERE `+strings.Join(where, " AND ")+`
ORDER BY sort_name, customer_id
LIMIT `+arg(f.Limit+1), args...)
	if err != nil {
		return CustomerPage{}, fmt.Errorf("list customers: %w", err)
	}
	var sortNames []string
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (CustomerItem, error) {
		var it CustomerItem
		var sortName, total string
		if err := row.Scan(&it.ID, &it.Name, &sortName, &it.TotalUsers, &total); err != nil {
			return it, err
		}
		sortNames = append(sortNames, sortName)
		var err error
		it.MonthlyTotal, err = domain.ParseMoney(total)
		return it, err
	})
	if err != nil {
		return CustomerPage{}, fmt.Errorf("list customers: %w", err)
	}
	page := CustomerPage{Customers: items}
	if len(items) > f.Limit {
		page.Customers = items[:f.Limit]
		last := f.Limit - 1
		c := encodeCursor(sortNames[last], items[last].ID)
		page.NextCursor = &c
	}
	return page, nil
}

func encodeCursor(sortName, id string) string {
	b, _ := json.Marshal([]string{sortName, id})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(c string) (sortName, id string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	var parts []string
	if err == nil {
		err = json.Unmarshal(b, &parts)
	}
	if err != nil || len(parts) != 2 || !utf8.ValidString(parts[0]+parts[1]) || strings.ContainsRune(parts[0]+parts[1], 0) {
		return "", "", fmt.Errorf("%w %q: pass a next_cursor as given", ErrInvalidCursor, c)
	}
	return parts[0], parts[1], nil
}

// CustomerDetail is a customer with its current subscription.
type CustomerDetail struct {
	ID           string              `json:"id"`
	Name         string              `json:"name"`
	MSPID        string              `json:"msp_id"`
	TotalUsers   int                 `json:"total_users"`
	Version      int64               `json:"version"`
	Currency     string              `json:"currency"`
	MonthlyTotal domain.Money        `json:"monthly_total"`
	Lines        []domain.PricedLine `json:"lines"`
}

// Customer returns one of the MSP's customers.
func (q *Queries) Customer(ctx context.Context, mspID, customerID string) (CustomerDetail, error) {
	var d CustomerDetail
	var total string
	var lines []byte
	err := q.db.QueryRow(ctx, `SELECT customer_id, name, msp_id, total_users, version, currency, monthly_total, lines
FROM customer_views WHERE customer_id = $1 AND msp_id = $2`, customerID, mspID).
		Scan(&d.ID, &d.Name, &d.MSPID, &d.TotalUsers, &d.Version, &d.Currency, &total, &lines)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, notFound("customer %q not found", customerID)
	}
	if err == nil {
		d.MonthlyTotal, err = domain.ParseMoney(total)
	}
	if err == nil {
		err = json.Unmarshal(lines, &d.Lines)
	}
	if err != nil {
		return d, fmt.Errorf("read customer %q: %w", customerID, err)
	}
	return d, nil
}
