// Package catalog reads the product catalog from PostgreSQL (the products
// table that `upsell import` fills). Products are reference data, not event
// streams: a quote records the prices it used in its own events, so a later
// catalog change never rewrites a quote's history.
//
// This package must never be imported by the domain.
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/domain"
)

// ErrCorrupt means the stored catalog does not pass validation. It is the
// server's fault, not the caller's: the HTTP layer must not pass the
// domain's code inside it on to a client as if its request were wrong.
var ErrCorrupt = errors.New("the stored catalog is invalid")

// Querier is a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Products reads every product, ordered by code, as stored (unvalidated).
func Products(ctx context.Context, q Querier) ([]domain.Product, error) {
	rows, err := q.Query(ctx, `SELECT code, name, per_user, currency, term_types, tiers FROM products ORDER BY code`)
	if err != nil {
		return nil, fmt.Errorf("read the catalog: %w", err)
	}
	products, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.Product, error) {
		var p domain.Product
		var tiers []byte
		if err := row.Scan(&p.Code, &p.Name, &p.PerUser, &p.Currency, &p.TermTypes, &tiers); err != nil {
			return p, err
		}
		if err := json.Unmarshal(tiers, &p.Tiers); err != nil {
			return p, fmt.Errorf("%w: product %s: tiers: %w", ErrCorrupt, p.Code, err)
		}
		return p, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the catalog: %w", err)
	}
	return products, nil
}

// Load reads and validates the catalog.
func Load(ctx context.Context, q Querier) (*domain.Catalog, error) {
	products, err := Products(ctx, q)
	if err != nil {
		return nil, err
	}
	c, err := domain.NewCatalog(products)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return c, nil
}
