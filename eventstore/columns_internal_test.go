package eventstore

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/internal/testdb"
)

// A merged statement's arrays: a slice of the arguments' own type where
// they share one (a nil standing for SQL null where the type has nil), a
// []any otherwise; PostgreSQL reads either back as the values given.
func TestMergedColumns(t *testing.T) {
	id1, id2 := uuid.New(), uuid.New()
	qs := []*pgx.QueuedQuery{
		{Arguments: []any{id1, "a", int64(1), []byte(`{"x":1}`), nil, json.RawMessage(`[1]`), "p"}},
		{Arguments: []any{id2, "b", int64(2), nil, "only", json.RawMessage(`[2]`), []byte("q")}},
	}
	cols, ok := columns(qs)
	if !ok {
		t.Fatal("two statements with as many arguments do not merge")
	}
	for i, want := range []any{[]uuid.UUID{}, []string{}, []int64{}, [][]byte{}, []any{}, []json.RawMessage{}, []any{}} {
		if reflect.TypeOf(cols[i]) != reflect.TypeOf(want) {
			t.Errorf("column %d: %T, want %T", i, cols[i], want)
		}
	}
	if _, ok := columns(qs[:1]); ok {
		t.Error("one statement merges")
	}
	if _, ok := columns([]*pgx.QueuedQuery{qs[0], {Arguments: []any{id1}}}); ok {
		t.Error("statements with different numbers of arguments merge")
	}

	pool := testdb.Pool(t, "eventstore")
	var got string
	if err := pool.QueryRow(t.Context(), `SELECT json_agg(json_build_array(a, b, c, d, e, f, g) ORDER BY n)::text
FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::text[]) WITH ORDINALITY AS u(a, b, c, d, e, f, g, n)`,
		cols...).Scan(&got); err != nil {
		t.Fatal(err)
	}
	want := `[["` + id1.String() + `", "a", 1, "{\"x\":1}", null, [1], "p"], ["` + id2.String() + `", "b", 2, null, "only", [2], "q"]]`
	if got != want {
		t.Errorf("read back:\n%s\nwant\n%s", got, want)
	}
}
