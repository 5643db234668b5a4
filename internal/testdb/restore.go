package testdb

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// RestoreShift is what SimulateRestore adds to every stored transaction
// id: 2^40, far above any test server's.
const RestoreShift = "1099511627776"

// SimulateRestore does to the stored transaction ids what a logical restore
// into a younger cluster does, as far as order goes: every id (but 0, "the
// start") ends far above the server's, in the same order. Events,
// checkpoints, the SQL topic's messages and its consumer groups alike.
func SimulateRestore(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	shift := func(col string) string {
		return col + ` = (` + col + `::text::numeric + ` + RestoreShift + `)::text::xid8`
	}
	for _, sql := range []string{
		`UPDATE events SET ` + shift("transaction_id"),
		`UPDATE projection_checkpoints SET ` + shift("transaction_id") + ` WHERE transaction_id <> '0'`,
		`UPDATE watermill_upsell_events SET ` + shift("transaction_id"),
		`UPDATE watermill_offsets_upsell_events SET ` + shift("last_processed_transaction_id") + ` WHERE last_processed_transaction_id <> '0'`,
	} {
		if _, err := pool.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// RebaselineDigest is a digest of every column a rebaseline may change, to
// show that something (a dry run, a second run) changed nothing.
func RebaselineDigest(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	var d string
	err := pool.QueryRow(context.Background(), `SELECT
    coalesce((SELECT md5(string_agg(position || ':' || transaction_id, ',' ORDER BY position)) FROM events), '') || '/' ||
    coalesce((SELECT md5(string_agg(name || ':' || transaction_id || ':' || position, ',' ORDER BY name)) FROM projection_checkpoints), '') || '/' ||
    coalesce((SELECT md5(string_agg("offset" || ':' || transaction_id, ',' ORDER BY "offset")) FROM watermill_upsell_events), '') || '/' ||
    coalesce((SELECT md5(string_agg(consumer_group || ':' || last_processed_transaction_id || ':' || coalesce(offset_acked, -1), ',' ORDER BY consumer_group))
              FROM watermill_offsets_upsell_events), '')`).Scan(&d)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
