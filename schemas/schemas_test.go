package schemas_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/schemas"
)

func TestID(t *testing.T) {
	t.Parallel()
	// The relay puts this into every message as ce_dataschema: it must not change.
	if got := schemas.ID("OrderSubmitted", 2); got != "urn:upsell:schema:OrderSubmitted:v2" {
		t.Fatalf("ID = %q", got)
	}
	if n := (schemas.Name{EventType: "SeatsChanged", Version: 1}); n.String() != "SeatsChanged.v1" || n.Path() != "events/SeatsChanged.v1.json" ||
		n.ID() != "urn:upsell:schema:SeatsChanged:v1" {
		t.Fatalf("Name: %s %s %s", n, n.Path(), n.ID())
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	b, err := schemas.Load("OrderSubmitted", 2)
	if err != nil || !json.Valid(b) || !strings.Contains(string(b), `"urn:upsell:schema:OrderSubmitted:v2"`) {
		t.Fatalf("Load(OrderSubmitted, 2) = %.80s, %v", b, err)
	}
	for _, tt := range []struct {
		typ string
		v   int
	}{{"OrderSubmitted", 3}, {"OrderSubmitted", 0}, {"SomethingHappened", 1}, {"../events/OrderSubmitted", 2}, {"", 1}} {
		if _, err := schemas.Load(tt.typ, tt.v); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load(%q, %d): err = %v, want fs.ErrNotExist", tt.typ, tt.v, err)
		}
		if err := schemas.Validate(tt.typ, tt.v, []byte(`{}`)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Validate(%q, %d): err = %v, want fs.ErrNotExist", tt.typ, tt.v, err)
		}
	}
}

// Every file is a well-formed, precise draft 2020-12 schema named after
// its event type and version.
func TestSchemaFiles(t *testing.T) {
	t.Parallel()
	entries, err := fs.ReadDir(schemas.FS, "events")
	if err != nil {
		t.Fatal(err)
	}
	if names := schemas.Names(); len(names) != len(entries) || len(names) == 0 {
		t.Fatalf("Names() lists %d schemas, the directory has %d files", len(names), len(entries))
	}
	// The embedded files are the ones in the source tree.
	onDisk, err := filepath.Glob("events/*")
	if err != nil || len(onDisk) != len(entries) {
		t.Fatalf("events/ has %d files, %d embedded (%v)", len(onDisk), len(entries), err)
	}
	for _, n := range schemas.Names() {
		t.Run(n.String(), func(t *testing.T) {
			t.Parallel()
			raw, err := schemas.Load(n.EventType, n.Version)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			for key, want := range map[string]string{
				"$schema": "https://json-schema.org/draft/2020-12/schema",
				"$id":     schemas.ID(n.EventType, n.Version),
				"title":   fmt.Sprintf("%s v%d", n.EventType, n.Version),
			} {
				if doc[key] != want {
					t.Errorf("%s = %v, want %q", key, doc[key], want)
				}
			}
			if d, _ := doc["description"].(string); len(d) < 20 {
				t.Errorf("description %q says too little", d)
			}
			if _, err := schemas.Compile(n.EventType, n.Version); err != nil {
				t.Fatal(err)
			}
			checkPrecise(t, "", doc, doc)
		})
	}
	for _, e := range entries {
		if !regexp.MustCompile(`^[A-Z][A-Za-z0-9]*\.v[1-9][0-9]*\.json$`).MatchString(e.Name()) {
			t.Errorf("events/%s: not named <EventType>.v<N>.json", e.Name())
		}
	}
}

// checkPrecise walks a schema: every object lists all its properties as
// required and refuses others, every property says what it means, every
// $defs entry is used, currencies are the domain's and seat maxima its
// MaxSeats.
func checkPrecise(t *testing.T, at string, v any, root map[string]any) {
	t.Helper()
	switch v := v.(type) {
	case []any:
		for i, x := range v {
			checkPrecise(t, fmt.Sprintf("%s/%d", at, i), x, root)
		}
	case map[string]any:
		if props, ok := v["properties"].(map[string]any); ok {
			if v["type"] != "object" || v["additionalProperties"] != false {
				t.Errorf("%s: an object schema needs \"type\": \"object\" and \"additionalProperties\": false", at)
			}
			var req []string
			for _, r := range v["required"].([]any) {
				req = append(req, r.(string))
			}
			var keys []string
			for k, p := range props {
				keys = append(keys, k)
				if d, _ := p.(map[string]any)["description"].(string); d == "" {
					t.Errorf("%s/properties/%s has no description", at, k)
				}
			}
			slices.Sort(req)
			slices.Sort(keys)
			if !slices.Equal(req, keys) {
				t.Errorf("%s: required %v, properties %v: the encoder writes every field", at, req, keys)
			}
		}
		if enum, ok := v["enum"].([]any); ok && strings.HasSuffix(at, "/currency") {
			var got []string
			for _, e := range enum {
				got = append(got, e.(string))
			}
			if !slices.Equal(got, domain.Currencies()) {
				t.Errorf("%s: currencies %v, the domain knows %v", at, got, domain.Currencies())
			}
		}
		if m, ok := v["maximum"].(float64); ok && m != domain.MaxSeats {
			t.Errorf("%s: maximum %v, want domain.MaxSeats %d", at, m, domain.MaxSeats)
		}
		if r, ok := v["$ref"].(string); ok {
			name, found := strings.CutPrefix(r, "#/$defs/")
			if _, def := root["$defs"].(map[string]any)[name]; !found || !def {
				t.Errorf("%s: $ref %q is not one of the file's $defs", at, r)
			}
		}
		if at == "" {
			raw, _ := json.Marshal(root)
			for name := range root["$defs"].(map[string]any) {
				if !strings.Contains(string(raw), `"#/$defs/`+name+`"`) {
					t.Errorf("$defs/%s is never used", name)
				}
			}
		}
		for k, x := range v {
			checkPrecise(t, at+"/"+k, x, root)
		}
	}
}

// The schemas and the domain agree on what exists: every event type has a
// schema for every version it reads (the current one, and every older one
// it upcasts), and every schema file is such a version: no stale file.
func TestSchemasCoverTheDomain(t *testing.T) {
	t.Parallel()
	for typ, current := range domain.EventTypes() {
		versions := domain.SchemaVersions(typ)
		if !slices.Contains(versions, current) {
			t.Errorf("%s: SchemaVersions %v lacks the current %d", typ, versions, current)
		}
		for _, v := range versions {
			if _, err := schemas.Load(typ, v); err != nil {
				t.Errorf("%s v%d (current %d) has no schema: add schemas/events/%s.v%d.json", typ, v, current, typ, v)
			}
		}
	}
	for _, n := range schemas.Names() {
		current, known := domain.CurrentSchemaVersion(n.EventType)
		switch {
		case !known:
			t.Errorf("%s: the domain has no event type %s", n.Path(), n.EventType)
		case !slices.Contains(domain.SchemaVersions(n.EventType), n.Version):
			t.Errorf("%s is stale: %s is at version %d and nothing upcasts version %d", n.Path(), n.EventType, current, n.Version)
		}
	}
}

// Every older schema version has an example payload, as the code of its
// time wrote it, in testdata/<Type>.v<N>.json: it matches its own schema,
// and upcast it matches the current one and decodes.
func TestOlderVersionsUpcastToValidCurrentData(t *testing.T) {
	t.Parallel()
	olders := 0
	for typ, current := range domain.EventTypes() {
		for _, v := range domain.SchemaVersions(typ) {
			if v == current {
				continue
			}
			olders++
			example, err := os.ReadFile(fmt.Sprintf("testdata/%s.v%d.json", typ, v))
			if err != nil {
				t.Errorf("%s v%d: no example payload: %v", typ, v, err)
				continue
			}
			if err := schemas.Validate(typ, v, example); err != nil {
				t.Errorf("the example of %s v%d: %v", typ, v, err)
			}
			if err := schemas.Validate(typ, current, example); err == nil {
				t.Errorf("%s v%d data also matches v%d: the versions are not told apart", typ, v, current)
			}
			got, up, err := domain.Upcast(typ, v, example)
			if err != nil || got != current {
				t.Errorf("Upcast(%s v%d) = v%d, %v", typ, v, got, err)
				continue
			}
			if err := schemas.Validate(typ, current, up); err != nil {
				t.Errorf("%s v%d upcast to v%d: %v\n%s", typ, v, current, err, up)
			}
			if _, err := domain.DecodeEvent(typ, v, example); err != nil {
				t.Errorf("DecodeEvent(%s v%d): %v", typ, v, err)
			}
		}
	}
	if olders == 0 {
		t.Fatal("no older schema version: OrderSubmitted v1 should be one")
	}
}

// The schemas refuse what the domain never writes.
func TestSchemasArePrecise(t *testing.T) {
	t.Parallel()
	_, v2, err := domain.Upcast("OrderSubmitted", 1, mustRead(t, "testdata/OrderSubmitted.v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.Validate("OrderSubmitted", 2, v2); err != nil {
		t.Fatalf("the valid base case: %v", err)
	}
	edit := func(f func(m map[string]any, line map[string]any)) []byte {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(string(v2)))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		f(m, m["lines"].([]any)[0].(map[string]any))
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, data := range map[string][]byte{
		"money as a number":            edit(func(m, _ map[string]any) { m["new_monthly_total"] = json.Number("4240.30") }),
		"money with an exponent":       edit(func(m, _ map[string]any) { m["new_monthly_total"] = "4.2403e3" }),
		"money with a leading plus":    edit(func(m, _ map[string]any) { m["monthly_difference"] = "+898.50" }),
		"a negative payment":           edit(func(_, l map[string]any) { l["current_payment"] = "-2240.00" }),
		"an unknown field":             edit(func(m, _ map[string]any) { m["discount"] = "0.00" }),
		"an unknown line field":        edit(func(_, l map[string]any) { l["discount"] = "0.00" }),
		"a missing field":              edit(func(m, _ map[string]any) { delete(m, "submitted_by") }),
		"a line without its delta":     edit(func(_, l map[string]any) { delete(l, "quantity_change") }),
		"a negative quantity_change":   edit(func(_, l map[string]any) { l["quantity_change"] = json.Number("-1") }),
		"a fractional quantity":        edit(func(_, l map[string]any) { l["current_quantity"] = json.Number("700.5") }),
		"zero current seats":           edit(func(_, l map[string]any) { l["current_quantity"] = json.Number("0") }),
		"seats above MaxSeats":         edit(func(_, l map[string]any) { l["current_quantity"] = json.Number("10000001") }),
		"baseline version 0":           edit(func(m, _ map[string]any) { m["baseline_version"] = json.Number("0") }),
		"a time that is not RFC 3339":  edit(func(m, _ map[string]any) { m["submitted_at"] = "14/03/2025 10:00" }),
		"an empty user":                edit(func(m, _ map[string]any) { m["submitted_by"] = "" }),
		"no lines":                     edit(func(m, _ map[string]any) { m["lines"] = []any{} }),
		"per_user as a string":         edit(func(_, l map[string]any) { l["per_user"] = "true" }),
		"a string where an int is due": edit(func(m, _ map[string]any) { m["total_users"] = "700" }),
	} {
		err := schemas.Validate("OrderSubmitted", 2, data)
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: err = %v, want a *jsonschema.ValidationError", name, err)
		}
	}
	for name, tt := range map[string]struct {
		typ  string
		data string
	}{
		"an unknown currency":          {"CustomerOnboarded", `{"customer_id":"c","msp_id":"m","name":"n","currency":"XXX","lines":[],"onboarded_at":"2025-03-14T09:30:00Z"}`},
		"a quote id that is no UUID":   {"SubscriptionAmended", `{"customer_id":"c","quote_id":"q-1","lines":[{"product_code":"A","product":"A","term_type":"12 Month","per_user":true,"prior_quantity":1,"current_quantity":2,"prior_unit_price":"1.00","current_unit_price":"1.00","prior_payment":"1.00","current_payment":"2.00"}],"new_monthly_total":"2.00","amended_at":"2025-03-14T09:30:00Z"}`},
		"an upper-case UUID":           {"ChangeQuoteOpened", `{"quote_id":"0195A1D2-7C3E-7F00-8000-000000000001","customer_id":"c","customer_name":"C","msp_id":"m","msp_name":"M","currency":"USD","baseline_version":1,"baseline":[],"opened_by":"u","opened_at":"2025-03-14T09:30:00Z"}`},
		"an acknowledgement not given": {"AcknowledgementsGiven", `{"msa_governs_order":true,"authorized_to_order":false,"by":"u","msp_id":"m","at":"2025-03-14T09:30:00Z"}`},
		"zero seats added":             {"ProductAdded", `{"product_code":"A","product_name":"A","term_type":"12 Month","per_user":true,"seats":0,"unit_price":"1.00"}`},
		"not an object":                {"QuoteSaved", `["2025-03-14T09:30:00Z"]`},
	} {
		err := schemas.Validate(tt.typ, 1, []byte(tt.data))
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: err = %v, want a *jsonschema.ValidationError", name, err)
		}
	}
	if err := schemas.Validate("QuoteSaved", 1, []byte(`{"saved_at":`)); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("malformed data: err = %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// docs/events.md documents every event type and schema file, and its
// OrderSubmitted v2 example is valid and is what the domain writes.
func TestDocsDescribeTheContract(t *testing.T) {
	t.Parallel()
	doc := string(mustRead(t, "../docs/events.md"))
	for typ := range domain.EventTypes() {
		if !strings.Contains(doc, "### `"+typ+"`") {
			t.Errorf("docs/events.md has no section on %s", typ)
		}
	}
	for _, n := range schemas.Names() {
		if !strings.Contains(doc, "`"+n.String()+".json`") {
			t.Errorf("docs/events.md does not name %s", n.Path())
		}
	}
	_, example, found := strings.Cut(doc, "#### Example: OrderSubmitted v2")
	example, _, _ = strings.Cut(example, "```\n")
	_, example, _ = strings.Cut(example, "```json\n")
	if !found || example == "" {
		t.Fatal("docs/events.md has no OrderSubmitted v2 example")
	}
	if err := schemas.Validate("OrderSubmitted", 2, []byte(example)); err != nil {
		t.Fatalf("the example: %v", err)
	}
	e, err := domain.DecodeEvent("OrderSubmitted", 2, []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	_, _, encoded, err := domain.EncodeEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	var indented strings.Builder
	pretty := json.NewEncoder(&indented)
	pretty.SetIndent("", "  ")
	if err := pretty.Encode(json.RawMessage(encoded)); err != nil {
		t.Fatal(err)
	}
	if indented.String() != example {
		t.Errorf("the example is not what the encoder writes:\n%s", indented.String())
	}
}
