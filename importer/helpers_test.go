package importer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// The tests of this package share one database and run in parallel. Only
// TestImportExampleFile imports fixtures/import-example.json with its own
// ids; every other test imports a copy whose every id, product code and
// API key ends with a suffix of its own (see suffixed), and looks only at
// rows with that suffix.

var (
	clockA = domain.FixedClock{T: time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)}
	clockB = domain.FixedClock{T: time.Date(2025, 6, 15, 17, 0, 0, 0, time.UTC)}
)

const examplePath = "../fixtures/import-example.json"

func setup(t *testing.T) (*eventstore.Store, *pgxpool.Pool, context.Context) {
	t.Helper()
	pool := testdb.Pool(t, "importer")
	return eventstore.New(pool), pool, t.Context()
}

// newSuffix returns a suffix no other test uses.
func newSuffix() string {
	return strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
}

// readExample parses the example fixture.
func readExample(t *testing.T) *importer.File {
	t.Helper()
	return parseFile(t, examplePath)
}

func parseFile(t *testing.T, path string) *importer.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file, err := importer.Parse(f)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return file
}

// suffixed returns the example file with "-"+sfx appended to every MSP id,
// API key, product code and customer id (and to the references to them), so
// that a test owns all the rows its imports write. User ids are kept: their
// key is (msp_id, id).
func suffixed(t *testing.T, sfx string) *importer.File {
	t.Helper()
	f := readExample(t)
	s := "-" + sfx
	for i := range f.MSPs {
		m := &f.MSPs[i]
		m.ID += s
		for j := range m.Users {
			m.Users[j].APIKey += s
		}
	}
	for i := range f.Products {
		f.Products[i].Code += s
	}
	for i := range f.Customers {
		c := &f.Customers[i]
		c.ID += s
		c.MSPID += s
		for j := range c.Subscriptions {
			c.Subscriptions[j].ProductCode += s
		}
	}
	return f
}

// encode writes a file in the import format, indented like the fixture.
func encode(t *testing.T, f *importer.File) []byte {
	t.Helper()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// importBytes parses and imports data as `upsell import` does.
func importBytes(ctx context.Context, store *eventstore.Store, data []byte, clock domain.Clock) (importer.Report, error) {
	file, err := importer.Parse(bytes.NewReader(data))
	if err != nil {
		return importer.Report{}, err
	}
	return importer.Import(ctx, store, file, clock)
}

func importOrFatal(t *testing.T, store *eventstore.Store, f *importer.File, clock domain.Clock) importer.Report {
	t.Helper()
	rep, err := importBytes(t.Context(), store, encode(t, f), clock)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return rep
}

// invalidFile returns err as an *importer.InvalidFileError, failing the
// test when it is not one.
func invalidFile(t *testing.T, err error) *importer.InvalidFileError {
	t.Helper()
	if err == nil {
		t.Fatal("the file was accepted, want it refused")
	}
	var inv *importer.InvalidFileError
	if !errors.As(err, &inv) {
		t.Fatalf("error %q (%T) is not an *importer.InvalidFileError", err, err)
	}
	return inv
}

func paths(e *importer.InvalidFileError) []string {
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.Path
	}
	return out
}

// wantPaths checks the problems' paths exactly, in order, and that the
// error's message names each of them.
func wantPaths(t *testing.T, e *importer.InvalidFileError, want ...string) {
	t.Helper()
	if got := paths(e); !slices.Equal(got, want) {
		t.Fatalf("problems at %q, want %q; error:\n%v", got, want, e)
	}
	for _, p := range want {
		if p != "" && !strings.Contains(e.Error(), p+": ") {
			t.Errorf("error message does not name %s:\n%v", p, e)
		}
	}
}

// snapshot is every row, with its xmin, that a test's imports can have
// written: the rows of its MSPs, users, products and customer streams.
// Equal snapshots mean nothing was inserted, updated (even to the same
// values) or deleted.
type snapshot struct {
	MSPs, Users, Products, Events []string
}

func (s snapshot) empty() bool {
	return len(s.MSPs)+len(s.Users)+len(s.Products)+len(s.Events) == 0
}

// take reads the rows whose id ends with "-"+sfx.
func take(t *testing.T, pool *pgxpool.Pool, sfx string) snapshot {
	t.Helper()
	like := "%-" + sfx
	rows := func(query string) []string {
		t.Helper()
		r, err := pool.Query(t.Context(), query, like)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(r, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return snapshot{
		MSPs:     rows(`SELECT r::text || ' xmin ' || r.xmin::text FROM msps r WHERE id LIKE $1 ORDER BY id`),
		Users:    rows(`SELECT r::text || ' xmin ' || r.xmin::text FROM msp_users r WHERE msp_id LIKE $1 ORDER BY msp_id, id`),
		Products: rows(`SELECT r::text || ' xmin ' || r.xmin::text FROM products r WHERE code LIKE $1 ORDER BY code`),
		Events:   rows(`SELECT r::text || ' xmin ' || r.xmin::text FROM events r WHERE stream_id LIKE $1 ORDER BY position`),
	}
}

func wantSameSnapshot(t *testing.T, got, want snapshot) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	for _, table := range []struct {
		name      string
		got, want []string
	}{
		{"msps", got.MSPs, want.MSPs},
		{"msp_users", got.Users, want.Users},
		{"products", got.Products, want.Products},
		{"events", got.Events, want.Events},
	} {
		if !slices.Equal(table.got, table.want) {
			t.Errorf("%s changed: %d rows, want %d\n got:  %q\n want: %q",
				table.name, len(table.got), len(table.want), table.got, table.want)
		}
	}
}

func wantCounts(t *testing.T, what string, got, want importer.Counts) {
	t.Helper()
	if got != want {
		t.Errorf("%s: %+v, want %+v", what, got, want)
	}
}

// testdata returns the path of a fixture under testdata.
func testdata(name string) string {
	return filepath.Join("testdata", name)
}
