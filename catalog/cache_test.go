package catalog_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/catalog"
)

// revision reads the catalog's revision in tx.
func revision(t *testing.T, tx pgx.Tx) int64 {
	t.Helper()
	var rev int64
	if err := tx.QueryRow(context.Background(), catalog.RevisionSQL).Scan(&rev); err != nil {
		t.Fatal(err)
	}
	return rev
}

// The cache serves the catalog it read while the revision stays, and reads
// it again as soon as any change to products moves the revision on: a price
// changed by SQL, a product deleted, a table truncated. An upsert that
// changes nothing leaves the revision, so a repeated import costs no reload.
func TestCacheFollowsTheRevision(t *testing.T) {
	inTx(t, func(tx pgx.Tx) {
		ctx := context.Background()
		exec := func(sql string) {
			t.Helper()
			if _, err := tx.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		unitPrice := func(c *catalog.Cache) string {
			t.Helper()
			cat, err := c.At(ctx, tx, revision(t, tx))
			if err != nil {
				t.Fatal(err)
			}
			p, err := cat.Product("EMAIL-SEC")
			if err != nil {
				return "absent"
			}
			amount, err := p.UnitPrice("12 Month", 700)
			if err != nil {
				t.Fatal(err)
			}
			return amount.String()
		}
		exec(`INSERT INTO products (code, name, per_user, currency, term_types, tiers) VALUES
			('EMAIL-SEC', 'Email Security', true, 'USD', '{"12 Month"}',
			 '[{"term_type": "12 Month", "min_seats": 1, "unit_price": "3.50"}, {"term_type": "12 Month", "min_seats": 700, "unit_price": "3.20"}]')`)
		var cache catalog.Cache
		if got := unitPrice(&cache); got != "3.20" {
			t.Fatalf("price %s, want 3.20", got)
		}
		before := revision(t, tx)
		// The importer's upsert of an equal row updates nothing.
		exec(`INSERT INTO products (code, name, per_user, currency, term_types, tiers) VALUES
			('EMAIL-SEC', 'Email Security', true, 'USD', '{"12 Month"}',
			 '[{"term_type": "12 Month", "min_seats": 1, "unit_price": "3.50"}, {"term_type": "12 Month", "min_seats": 700, "unit_price": "3.20"}]')
			ON CONFLICT (code) DO UPDATE SET tiers = EXCLUDED.tiers
			WHERE products.tiers IS DISTINCT FROM EXCLUDED.tiers`)
		if after := revision(t, tx); after != before {
			t.Fatalf("an upsert that changed nothing moved the revision from %d to %d", before, after)
		}
		exec(`UPDATE products SET tiers = '[{"term_type": "12 Month", "min_seats": 1, "unit_price": "3.50"}, {"term_type": "12 Month", "min_seats": 700, "unit_price": "3.10"}]'`)
		if got := unitPrice(&cache); got != "3.10" {
			t.Fatalf("after a price change by SQL the cache gives %s, want 3.10", got)
		}
		exec(`DELETE FROM products WHERE code = 'EMAIL-SEC'`)
		if got := unitPrice(&cache); got != "absent" {
			t.Fatalf("after the product was deleted the cache gives its price %s", got)
		}
		exec(`INSERT INTO products (code, name, per_user, currency, term_types, tiers) VALUES
			('EMAIL-SEC', 'Email Security', true, 'USD', '{"12 Month"}', '[{"term_type": "12 Month", "min_seats": 1, "unit_price": "2.00"}]')`)
		if got := unitPrice(&cache); got != "2.00" {
			t.Fatalf("price %s, want 2.00", got)
		}
		exec(`TRUNCATE products CASCADE`)
		if got := unitPrice(&cache); got != "absent" {
			t.Fatalf("after TRUNCATE the cache gives a price %s", got)
		}
	})
}

// The guard a command sends with its append passes only at the catalog's
// revision, and its merged form, for a group of commands, only when every
// one of their revisions is it; a refusal is what RevisionMoved reports.
func TestExpectRevision(t *testing.T) {
	inTx(t, func(tx pgx.Tx) {
		ctx := context.Background()
		rev := revision(t, tx)
		check := func(sql string, arg any) error {
			t.Helper()
			if _, err := tx.Exec(ctx, `SAVEPOINT guard`); err != nil {
				t.Fatal(err)
			}
			_, err := tx.Exec(ctx, sql, arg)
			if _, rerr := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT guard`); rerr != nil {
				t.Fatal(rerr)
			}
			return err
		}
		for _, c := range []struct {
			name  string
			sql   string
			arg   any
			moved bool
		}{
			{"at the revision", catalog.ExpectRevisionSQL, rev, false},
			{"at another", catalog.ExpectRevisionSQL, rev - 1, true},
			{"merged, all at the revision", catalog.ExpectRevisionsSQL, []int64{rev, rev, rev}, false},
			{"merged, one at another", catalog.ExpectRevisionsSQL, []int64{rev, rev + 1, rev}, true},
		} {
			err := check(c.sql, c.arg)
			if catalog.RevisionMoved(err) != c.moved || (!c.moved && err != nil) {
				t.Errorf("%s: %v, want moved %v", c.name, err, c.moved)
			}
		}
	})
}
