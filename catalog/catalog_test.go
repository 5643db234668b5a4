package catalog_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/catalog"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// inTx runs f in a transaction that is rolled back, so tests leave no rows.
func inTx(t *testing.T, f func(tx pgx.Tx)) {
	t.Helper()
	tx, err := testdb.Pool(t, "catalog").Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	f(tx)
}

func TestLoadReadsAndValidatesProducts(t *testing.T) {
	t.Parallel()
	inTx(t, func(tx pgx.Tx) {
		ctx := context.Background()
		_, err := tx.Exec(ctx, `INSERT INTO products (code, name, per_user, currency, term_types, tiers) VALUES
			('EMAIL-SEC', 'Email Security', true, 'USD', '{"12 Month"}',
			 '[{"term_type": "12 Month", "min_seats": 1, "unit_price": "3.50"}, {"term_type": "12 Month", "min_seats": 700, "unit_price": "3.20"}]')`)
		if err != nil {
			t.Fatal(err)
		}
		c, err := catalog.Load(ctx, tx)
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.Product("EMAIL-SEC")
		if err != nil {
			t.Fatal(err)
		}
		price, err := p.UnitPrice("12 Month", 700)
		if err != nil || price.String() != "3.20" {
			t.Fatalf("700 seats cost %s (%v), want 3.20", price, err)
		}
	})
}

func TestLoadRefusesACorruptRow(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ tiers, want string }{
		"tiers that are not tiers":     {`{"not": "a list"}`, "product BAD: tiers"},
		"a price that is no amount":    {`[{"term_type": "12 Month", "min_seats": 1, "unit_price": "cheap"}]`, "not a decimal amount"},
		"a term without a 1-seat tier": {`[{"term_type": "12 Month", "min_seats": 5, "unit_price": "1.00"}]`, "no tier from 1 seat"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			inTx(t, func(tx pgx.Tx) {
				ctx := context.Background()
				if _, err := tx.Exec(ctx, `INSERT INTO products (code, name, per_user, currency, term_types, tiers)
					VALUES ('BAD', 'Bad', true, 'USD', '{"12 Month"}', $1)`, tt.tiers); err != nil {
					t.Fatal(err)
				}
				_, err := catalog.Load(ctx, tx)
				if !errors.Is(err, catalog.ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.want)
				}
			})
		})
	}
}
