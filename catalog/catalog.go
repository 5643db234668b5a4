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
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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

// RevisionSQL reads the catalog's revision, which every change to the
// products table moves on (migration 007): queue it beside another query
// and give the result to Cache.At.
const RevisionSQL = `SELECT revision FROM catalog_revision`

// ExpectRevisionSQL fails, with an error RevisionMoved reports, unless
// the catalog is at revision $1 (migration 012). Queued with an append
// whose decision priced from Cache.Kept, it stops the commit when the
// products changed since.
const ExpectRevisionSQL = `SELECT upsell_expect_catalog_revision($1)`

// ExpectRevisionsSQL is ExpectRevisionSQL for several commands of one
// group commit (eventstore.WithMerged): $1 is their revisions, each
// checked once.
const ExpectRevisionsSQL = `SELECT upsell_expect_catalog_revision(r) FROM (SELECT DISTINCT r FROM unnest($1::bigint[]) AS x(r)) AS d`

// revisionMoved is upsell_expect_catalog_revision's SQLSTATE.
const revisionMoved = "UP412"

// RevisionMoved reports whether err is (or wraps) the failure of
// ExpectRevisionSQL: the catalog moved past the expected revision.
func RevisionMoved(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == revisionMoved
}

// Cache keeps the validated catalog in memory with the revision it was read
// at, so that a command reads and validates the products only after they
// changed. It is safe for concurrent use; the catalogs it returns are
// shared and must not be changed.
type Cache struct {
	mu       sync.Mutex
	catalog  *domain.Catalog
	revision int64
}

// At returns the catalog as of revision, which the caller has just read
// (RevisionSQL): the kept one when it is that revision, else the one read
// now through q. A catalog read now may be newer than revision (another
// import committed meanwhile), never older.
func (c *Cache) At(ctx context.Context, q RevisionQuerier, revision int64) (*domain.Catalog, error) {
	c.mu.Lock()
	cat, rev := c.catalog, c.revision
	c.mu.Unlock()
	if cat != nil && rev >= revision {
		return cat, nil
	}
	cat, rev, err := LoadRevision(ctx, q)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if rev >= c.revision {
		c.catalog, c.revision = cat, rev
	}
	c.mu.Unlock()
	return cat, nil
}

// Kept returns the catalog kept and its revision, or nil before one was
// read. It may be behind the database: a decision priced from it must be
// guarded by ExpectRevisionSQL.
func (c *Cache) Kept() (*domain.Catalog, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.catalog, c.revision
}

// RevisionQuerier is a Querier that also reads single rows.
type RevisionQuerier interface {
	Querier
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// LoadRevision reads and validates the catalog with its revision. The
// revision is read before and after the products and the read is repeated
// until both agree, so the catalog is exactly that revision's.
func LoadRevision(ctx context.Context, q RevisionQuerier) (*domain.Catalog, int64, error) {
	for {
		var before, after int64
		if err := q.QueryRow(ctx, RevisionSQL).Scan(&before); err != nil {
			return nil, 0, fmt.Errorf("read the catalog's revision: %w", err)
		}
		cat, err := Load(ctx, q)
		if err != nil {
			return nil, 0, err
		}
		if err := q.QueryRow(ctx, RevisionSQL).Scan(&after); err != nil {
			return nil, 0, fmt.Errorf("read the catalog's revision: %w", err)
		}
		if before == after {
			return cat, after, nil
		}
	}
}
