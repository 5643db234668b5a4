package importer_test

import (
	"os"
	"strings"
	"testing"

	"github.com/upsell-dev/upsell/importer"
)

// TestParseExample: the fixture parses strictly, as it is.
func TestParseExample(t *testing.T) {
	t.Parallel()
	f := readExample(t)
	if len(f.MSPs) != 2 || len(f.Products) != 4 || len(f.Customers) != 4 {
		t.Fatalf("parsed %d MSPs, %d products, %d customers; want 2, 4, 4", len(f.MSPs), len(f.Products), len(f.Customers))
	}
	if s := f.Customers[0].Subscriptions[0]; s != (importer.Subscription{ProductCode: "EMAIL-SEC", TermType: "12 Month", Seats: 682, UnitPrice: "3.25"}) {
		t.Errorf("Contoso's first subscription parsed as %+v", s)
	}
}

// TestParseNamesLineAndColumn: Parse promises that malformed JSON, unknown
// fields, trailing data and wrong types are refused with their line and
// column. Columns are 1-based and point at the offending character.
func TestParseNamesLineAndColumn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file     string
		wantPath string
		want     []string // in the problem's message
	}{
		// Line 3 is `    {"id": "msp-x", "name": "X" "users": []}`: the
		// quote that should follow a comma is at column 33.
		{"malformed.json", "", []string{"line 3, column 33:", "malformed JSON"}},
		// The second object starts line 4.
		{"trailing_object.json", "", []string{"line 4, column 1:", "unexpected data after the top-level object"}},
		{"trailing_garbage.json", "", []string{"line 4, column 3:", "unexpected data after the top-level object"}},
		{"truncated.json", "", []string{"malformed JSON", "ends before the top-level object does"}},
		// "seats": "682" on line 6, named by its indexed path.
		{"wrong_type.json", "customers[0].subscriptions[0].seats", []string{"line 6, column ", "expected int, found a JSON string"}},
		// "colour" is on line 5, column 34.
		{"unknown_field.json", "products[0].colour", []string{`unknown field "colour"`, "line 5, column 34"}},
		// "api_key" is a field of users, not of customers: the walk names
		// the customer's, not the first user's.
		{"misplaced_field.json", "customers[0].api_key", []string{`unknown field "api_key"`, "line 11, column 5"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			r, err := os.Open(testdata(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			f, err := importer.Parse(r)
			if f != nil {
				t.Errorf("Parse returned a file with its error")
			}
			inv := invalidFile(t, err)
			if len(inv.Problems) != 1 {
				t.Fatalf("%d problems, want 1: %v", len(inv.Problems), err)
			}
			p := inv.Problems[0]
			if p.Path != tt.wantPath {
				t.Errorf("path %q, want %q", p.Path, tt.wantPath)
			}
			for _, w := range tt.want {
				if !strings.Contains(p.Message, w) {
					t.Errorf("message %q does not say %q", p.Message, w)
				}
			}
		})
	}
}
