package importer_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/upsell-dev/upsell/importer"
)

// placeRe is how a problem names its place in the file.
var placeRe = regexp.MustCompile(`^line (\d+), column (\d+): `)

// endsEarly is the one problem without a line: the file ends before its
// top-level value does.
const endsEarly = "malformed JSON: the file ends before the top-level object does"

// FuzzParse: Parse never panics; a refusal is an *InvalidFileError whose
// every problem names its place (a line and column inside the file, and
// for an unknown field the path to that field); an accepted file
// round-trips: marshalled and parsed again it is the same File.
//
//	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 2m ./importer/
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(examplePath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, ` `, `{}`, `null`, `[]`, `"x"`, `1`, `{"msps":null}`, `{"msps":[]} `, `{"msps":[]}{}`, `{"msps":[]} x`,
		`{"msps":[{"id":"m","name":"M","users":[{"id":"u","name":"U","api_key":"0123456789"}]}]}`,
		`{"MSPS":[]}`, `{"Msps":[{"idx":1}]}`, `{"msps":[{"ID":"m","bogus":1}]}`, `{"customers":[{"Subscriptions":[{"seatz":1}]}]}`,
		`{"products":[{"code":"P","tiers":[{"min_seats":1e400}]}]}`, `{"products":[{"code":"P","tiers":[{"min_seats":9223372036854775808}]}]}`,
		`{"customers":[{"subscriptions":[{"seats":-1}]}]}`, `{"customers":[{"subscriptions":[{"seats":"682"}]}]}`,
		`{"customers":[{"name":"A\u0000B","id":"\ud800"}]}`, "{\"customers\":[{\"name\":\"\xff\xfe\"}]}",
		`{"customers":[{"name":"'; DROP TABLE events; --","id":"%_\\"}]}`, "{\"customers\":[{\"name\":\"\u202eRTL 😀\"}]}",
		`{"msps":[],"msps":[{"id":"dup"}]}`, `{"products":[{"per_user":"yes"}]}`, `{"products":[{"term_types":"12 Month"}]}`,
		"{\n\"msps\": [\n{\"id\": 1}\n]\n}", "{\r\n\"msps\":\r\n[}", `{"msps":[` + strings.Repeat("[", 10001), `{"msps":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
		"\ufeff{}", "{\"msps\":[]}\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := parseNoPanic(t, data)
		if err != nil {
			if file != nil {
				t.Errorf("Parse returned a file with its error")
			}
			checkRefusal(t, data, err)
			return
		}
		if file == nil {
			t.Fatal("Parse returned neither a file nor an error")
		}
		out, err := json.Marshal(file)
		if err != nil {
			t.Fatalf("marshal the parsed file: %v", err)
		}
		again, err := parseNoPanic(t, out)
		if err != nil {
			t.Fatalf("the parsed file, marshalled, is refused: %v\nfile %s", err, out)
		}
		if !reflect.DeepEqual(file, again) {
			t.Fatalf("the parsed file does not survive a round trip:\nfirst  %+v\nsecond %+v", file, again)
		}
		if out2, _ := json.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("marshalled twice, the file differs:\n%s\n%s", out, out2)
		}
	})
}

// parseNoPanic is Parse, with a panic made a failure of the test rather
// than the end of the test binary (which would hide the package's other
// tests).
func parseNoPanic(t *testing.T, data []byte) (file *importer.File, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Parse panicked on %q: %v\n%s", data, p, debug.Stack())
		}
	}()
	return importer.Parse(bytes.NewReader(data))
}

// checkRefusal: err is an *InvalidFileError whose problems each name a
// place inside the file.
func checkRefusal(t *testing.T, data []byte, err error) {
	t.Helper()
	var inv *importer.InvalidFileError
	if !errors.As(err, &inv) {
		t.Fatalf("error %q (%T) is not an *importer.InvalidFileError", err, err)
	}
	if len(inv.Problems) == 0 {
		t.Fatalf("a refusal without problems: %v", err)
	}
	lines := bytes.Count(data, []byte("\n")) + 1
	for _, p := range inv.Problems {
		if p.Message == endsEarly {
			if json.Valid(data) {
				t.Errorf("%q: says the file ends early, but it is valid JSON", p)
			}
			continue
		}
		m := placeRe.FindStringSubmatch(p.Message)
		if m == nil {
			t.Errorf("the problem %q names no line and column (input %q)", p, data)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		if line < 1 || line > lines || col < 1 || col > len(data)+1 {
			t.Errorf("the problem %q is at line %d, column %d: outside the file (%d lines, %d bytes)", p, line, col, lines, len(data))
		}
		if name, ok := unknownFieldName(p.Message); ok {
			// The path names the unknown field itself: its last element
			// (a key may hold dots and brackets itself).
			if !strings.HasSuffix(p.Path, name) || (len(p.Path) > len(name) && !strings.HasSuffix(p.Path, "."+name)) {
				t.Errorf("the problem %q is about the unknown field %q but its path is %q (input %q)", p, name, p.Path, data)
			}
		}
	}
}

// unknownFieldName reads the field's name from an unknown-field problem.
func unknownFieldName(msg string) (string, bool) {
	_, rest, ok := strings.Cut(msg, ": unknown field ")
	if !ok {
		return "", false
	}
	name, err := strconv.Unquote(rest)
	return name, err == nil
}

// TestImportRefusesTextPostgreSQLCannotHold: PostgreSQL's text and jsonb
// cannot hold a NUL character. A file with one in a name or an id must be
// refused like any other invalid file (an *InvalidFileError naming the
// place), not fail in the middle of the write with the database's error.
func TestImportRefusesTextPostgreSQLCannotHold(t *testing.T) {
	t.Parallel()
	store, _, ctx := setup(t)
	for _, tc := range []struct {
		path string
		edit func(f *importer.File)
	}{
		{"customers[0].name", func(f *importer.File) { f.Customers[0].Name = "Contoso\x00Ltd" }},
		{"customers[0].id", func(f *importer.File) { f.Customers[0].ID += "\x00" }},
		{"msps[0].name", func(f *importer.File) { f.MSPs[0].Name = "North\x00wind" }},
		{"msps[0].users[0].name", func(f *importer.File) { f.MSPs[0].Users[0].Name = "Alex\x00" }},
		{"products[0].name", func(f *importer.File) { f.Products[0].Name = "Email\x00Security" }},
	} {
		t.Run(tc.path, func(t *testing.T) {
			f := suffixed(t, newSuffix())
			tc.edit(f)
			_, err := importBytes(ctx, store, encode(t, f), clockA)
			var inv *importer.InvalidFileError
			if !errors.As(err, &inv) {
				t.Fatalf("import: %v (%T), want an *importer.InvalidFileError naming %s", err, err, tc.path)
			}
			if !slices.ContainsFunc(inv.Problems, func(p importer.Problem) bool { return p.Path == tc.path }) {
				t.Errorf("problems %v, want one at %s", inv.Problems, tc.path)
			}
		})
	}
}
