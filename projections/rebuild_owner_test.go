package projections_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/projections"
)

// TestRebuildKeepsOwnerOptionsAndGrants: the swapped-in table belongs to
// the live table's owner, with its storage options and grants, so a
// rebuild run as another role does not take the table away from the
// service.
func TestRebuildKeepsOwnerOptionsAndGrants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, reader := token()+"_owner", token()+"_reader"
	admin := sharedPool(t)
	for _, role := range []string{owner, reader} {
		if _, err := admin.Exec(ctx, `CREATE ROLE `+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
	// Registered before the database's own cleanup, so it runs after the
	// database (which holds the roles' objects) is dropped.
	t.Cleanup(func() {
		for _, role := range []string{owner, reader} {
			_, _ = admin.Exec(ctx, `DROP ROLE IF EXISTS `+pgx.Identifier{role}.Sanitize())
		}
	})
	pool := emptyPool(t)
	importFixture(t, pool)
	if _, err := pool.Exec(ctx, `ALTER TABLE customer_views OWNER TO `+pgx.Identifier{owner}.Sanitize()+`;
ALTER TABLE customer_views SET (fillfactor = 80);
GRANT SELECT ON customer_views TO `+pgx.Identifier{reader}.Sanitize()+` WITH GRANT OPTION`); err != nil {
		t.Fatal(err)
	}
	before := tableFacts(t, pool)
	if err := projections.Rebuild(ctx, pool, projections.Customers{}, nil); err != nil {
		t.Fatal(err)
	}
	if after := tableFacts(t, pool); after != before {
		t.Errorf("the rebuild changed the table's owner, options or grants:\nbefore %s\nafter  %s", before, after)
	}
}

// tableFacts is customer_views' owner, storage options and access list.
func tableFacts(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var facts string
	if err := pool.QueryRow(context.Background(), `SELECT format('%s %s %s', pg_get_userbyid(relowner), reloptions, relacl)
FROM pg_class WHERE oid = 'customer_views'::regclass`).Scan(&facts); err != nil {
		t.Fatal(err)
	}
	return facts
}
