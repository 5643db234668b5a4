package projections

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/internal/testdb"
)

// The merged upsert of several rows (what a group commit sends for its
// commands' rows, eventstore.WithMerged) leaves a table as the upserts
// one after the other do: new rows inserted, a row at an older version
// than the table's left alone, a newer one replacing it.
func TestMergedUpsertIsTheUpserts(t *testing.T) {
	pool := testdb.EmptyPool(t)
	ctx := t.Context()
	k := func() uuid.UUID { return uuid.New() }
	q1, q2, q3, q4 := k(), k(), k(), k()
	quote := func(id uuid.UUID, version int64, summary []byte) []any {
		return []any{id, "msp-1", "c-" + id.String()[:4], "draft", version, "12.50",
			[]byte(fmt.Sprintf(`{"quote_id":%q,"version":%d}`, id, version)), summary}
	}
	customer := func(id string, version int64) []any {
		return []any{id, "msp-1", "Name " + id, "name " + id, "N", "USD", int32(version), "3.20", version,
			[]byte(fmt.Sprintf(`[{"v":%d}]`, version))}
	}
	for _, tc := range []struct {
		name      string
		table     string
		nowColumn string
		upsert    func(table pgx.Identifier, nowColumn string) upsert
		merged    string
		key       string
		seed      [][]any // in both tables first
		rows      [][]any // one at a time into one table, merged into the other
	}{
		{"quotes", "quote_views", "updated_at", quoteRows.upsert,
			quoteRows.mergedUpsert(pgx.Identifier{"b"}, "updated_at"), "quote_id",
			[][]any{quote(q3, 5, nil), quote(q4, 6, nil)},
			[][]any{quote(q1, 1, nil), quote(q2, 2, []byte(`{"s":2}`)), quote(q3, 4, nil), quote(q4, 7, []byte(`{"s":7}`))}},
		{"customers", "customer_views", "", customerRows.upsert,
			customerRows.mergedUpsert(pgx.Identifier{"b"}, ""), "customer_id",
			[][]any{customer("c3", 5), customer("c4", 6)},
			[][]any{customer("c1", 1), customer("c2", 2), customer("c3", 4), customer("c4", 7)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := pool.Begin(ctx) // one transaction: now() is the same for both tables
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(ctx) }()
			for _, tbl := range []string{"a", "b"} {
				if _, err := tx.Exec(ctx, `CREATE TEMP TABLE `+tbl+` (LIKE `+tc.table+` INCLUDING ALL)`); err != nil {
					t.Fatal(err)
				}
			}
			single := func(table string, row []any) {
				if _, err := tx.Exec(ctx, tc.upsert(pgx.Identifier{table}, tc.nowColumn).sql, row...); err != nil {
					t.Fatalf("%s: %v", table, err)
				}
			}
			for _, row := range tc.seed {
				single("a", row)
				single("b", row)
			}
			for _, row := range tc.rows {
				single("a", row)
			}
			cols := make([]any, len(tc.rows[0]))
			for i := range cols {
				col := make([]any, len(tc.rows))
				for j, row := range tc.rows {
					col[j] = row[i]
				}
				cols[i] = col
			}
			if _, err := tx.Exec(ctx, tc.merged, cols...); err != nil {
				t.Fatalf("merged: %v\n%s", err, tc.merged)
			}
			rowsOf := func(table string) []string {
				rows, err := tx.Query(ctx, `SELECT to_jsonb(t)::text FROM `+table+` t ORDER BY `+tc.key)
				if err != nil {
					t.Fatal(err)
				}
				got, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				return got
			}
			a, b := rowsOf("a"), rowsOf("b")
			if len(a) != 4 || !slices.Equal(a, b) {
				t.Errorf("one at a time:\n%s\nmerged:\n%s", a, b)
			}
		})
	}
}

// mergedUpsert casts each parameter to its column's type: the types the
// rows declare are the tables'.
func TestRowTypesAreTheTables(t *testing.T) {
	pool := testdb.EmptyPool(t)
	for table, r := range map[string]struct{ columns, types []string }{
		"quote_views":    {quoteRows.columns, quoteRows.types},
		"customer_views": {customerRows.columns, customerRows.types},
	} {
		rows, err := pool.Query(t.Context(), `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, table)
		if err != nil {
			t.Fatal(err)
		}
		types := map[string]string{}
		var name, typ string
		if _, err := pgx.ForEachRow(rows, []any{&name, &typ}, func() error { types[name] = typ; return nil }); err != nil {
			t.Fatal(err)
		}
		if len(r.columns) != len(r.types) || len(types) != len(r.columns) {
			t.Fatalf("%s: %d columns, %d types declared; the table has %d columns", table, len(r.columns), len(r.types), len(types))
		}
		for i, c := range r.columns {
			want := r.types[i]
			if want == "timestamptz" {
				want = "timestamp with time zone"
			}
			if types[c] != want {
				t.Errorf("%s.%s: declared %s, the table has %s", table, c, r.types[i], types[c])
			}
		}
	}
}
