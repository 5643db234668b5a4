package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/upsell-dev/upsell/domain"
)

// orderSubmittedV1 is OrderSubmitted as the encoder wrote it at schema
// version 1, before v2 added the per-line deltas: the seed story's order
// (seedQuote reviewed at tReview, acknowledged by Sam at tAck, submitted by
// Alex at tSubmit), byte for byte.
const orderSubmittedV1 = `{"customer_id":"cust-contoso","baseline_version":1,"lines":[` +
	`{"product_code":"EMAIL-SEC","product":"Email Security Cloud Gateway","term_type":"12 Month","per_user":true,"prior_quantity":682,"current_quantity":700,"prior_unit_price":"3.25","current_unit_price":"3.20","prior_payment":"2216.50","current_payment":"2240.00"},` +
	`{"product_code":"ARCHIVE","product":"Cloud Archive","term_type":"12 Month","per_user":true,"prior_quantity":682,"current_quantity":682,"prior_unit_price":"1.65","current_unit_price":"1.65","prior_payment":"1125.30","current_payment":"1125.30"},` +
	`{"product_code":"AWARENESS","product":"Security Awareness Training","term_type":"12 Month","per_user":true,"prior_quantity":0,"current_quantity":700,"prior_unit_price":"0.00","current_unit_price":"1.25","prior_payment":"0.00","current_payment":"875.00"}],` +
	`"total_users":700,"prior_monthly_total":"3341.80","new_monthly_total":"4240.30","monthly_difference":"898.50",` +
	`"acknowledged_by":"u-sam","acknowledged_at":"2025-03-14T09:50:00Z","submitted_by":"u-alex","submitted_at":"2025-03-14T10:00:00Z"}`

// submittedSeed is the seed story's OrderSubmitted as the domain records it now.
func submittedSeed(t *testing.T) domain.OrderSubmitted {
	t.Helper()
	c := contoso(t)
	q := reviewed(t, c, true)
	must(t, q.Submit(c, alex, tSubmit))
	return lastEvent[domain.OrderSubmitted](t, q.Changes())
}

// jsonValue decodes JSON for comparison, numbers as json.Number (no float).
func jsonValue(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, data)
	}
	return v
}

func TestOrderSubmittedIsWrittenAtVersion2WithLineDeltas(t *testing.T) {
	t.Parallel()
	typ, ver, data, err := domain.EncodeEvent(submittedSeed(t))
	must(t, err)
	if typ != "OrderSubmitted" || ver != 2 {
		t.Fatalf("EncodeEvent = %s v%d, want OrderSubmitted v2", typ, ver)
	}
	if v, ok := domain.CurrentSchemaVersion("OrderSubmitted"); !ok || v != 2 {
		t.Fatalf("CurrentSchemaVersion(OrderSubmitted) = %d, %t", v, ok)
	}
	var got struct {
		Lines []struct {
			ProductCode    string      `json:"product_code"`
			QuantityChange json.Number `json:"quantity_change"`
			MonthlyChange  *string     `json:"monthly_change"`
		} `json:"lines"`
	}
	must(t, json.Unmarshal(data, &got))
	want := []string{"EMAIL-SEC 18 23.50", "ARCHIVE 0 0.00", "AWARENESS 700 875.00"}
	var lines []string
	for _, l := range got.Lines {
		if l.MonthlyChange == nil {
			t.Fatalf("a line has no monthly_change: %s", data)
		}
		lines = append(lines, fmt.Sprintf("%s %s %s", l.ProductCode, l.QuantityChange, *l.MonthlyChange))
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("v2 line deltas = %q, want %q\n%s", lines, want, data)
	}
	// The other events that carry OrderLines keep their version-1 form.
	for _, e := range []domain.Event{domain.OrderReviewed{Lines: []domain.OrderLine{{}}}, domain.SubscriptionAmended{Lines: []domain.OrderLine{{}}}} {
		_, ver, data, err := domain.EncodeEvent(e)
		must(t, err)
		if ver != 1 || strings.Contains(string(data), "_change") {
			t.Errorf("%s v%d = %s: its lines changed", e.EventType(), ver, data)
		}
	}
}

// A payload written at version 1 reads as the same event the domain
// records at version 2, deltas included.
func TestOrderSubmittedV1DecodesAsV2(t *testing.T) {
	t.Parallel()
	want := submittedSeed(t)
	_, _, v2, err := domain.EncodeEvent(want)
	must(t, err)

	fromV1, err := domain.DecodeEvent("OrderSubmitted", 1, []byte(orderSubmittedV1))
	must(t, err)
	fromV2, err := domain.DecodeEvent("OrderSubmitted", 2, v2)
	must(t, err)
	for name, got := range map[string]domain.Event{"v1": fromV1, "v2": fromV2} {
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Errorf("%s decodes to\n%+v\nwant\n%+v", name, got, want)
		}
		if _, ver, again, err := domain.EncodeEvent(got); err != nil || ver != 2 || string(again) != string(v2) {
			t.Errorf("%s re-encodes to v%d %s (%v)\nwant v2 %s", name, ver, again, err, v2)
		}
	}
	lines := fromV1.(domain.OrderSubmitted).Lines
	if lines[0].QuantityChange() != 18 || lines[0].MonthlyChange().String() != "23.50" ||
		lines[1].QuantityChange() != 0 || lines[1].MonthlyChange().String() != "0.00" ||
		lines[2].QuantityChange() != 700 || lines[2].MonthlyChange().String() != "875.00" {
		t.Errorf("v1 lines' deltas: %+v", lines)
	}

	// What the relay publishes: the upcast payload is the v2 payload.
	current, up, err := domain.Upcast("OrderSubmitted", 1, []byte(orderSubmittedV1))
	must(t, err)
	if current != 2 || !reflect.DeepEqual(jsonValue(t, up), jsonValue(t, v2)) {
		t.Fatalf("Upcast(v1) = v%d %s\nwant v2 %s", current, up, v2)
	}
}

func TestUpcastKeepsCurrentDataAsIs(t *testing.T) {
	t.Parallel()
	data := []byte(`{"product_code": "EMAIL-SEC",  "odd spacing": true}`)
	current, out, err := domain.Upcast("ProductRemoved", 1, data)
	if err != nil || current != 1 || string(out) != string(data) {
		t.Fatalf("Upcast(current) = %d %s %v, want the data as is", current, out, err)
	}
}

// The upcaster computes in decimals: a float would make 0.30 - 0.10 into
// 0.19999999999999998, and a negative change stays exact.
func TestUpcastOrderSubmittedIsExact(t *testing.T) {
	t.Parallel()
	v1 := `{"lines":[` +
		`{"product_code":"A","prior_quantity":1,"current_quantity":3,"prior_payment":"0.10","current_payment":"0.30"},` +
		`{"product_code":"B","prior_quantity":499,"current_quantity":500,"prior_payment":"1746.50","current_payment":"1625.00"},` +
		`{"product_code":"C","prior_quantity":9007199254740993,"current_quantity":9007199254740995,"prior_payment":"90071992547409.93","current_payment":"90071992547409.95"}],` +
		`"extra":{"kept":[1,2]}}`
	_, out, err := domain.Upcast("OrderSubmitted", 1, []byte(v1))
	must(t, err)
	var got struct {
		Lines []struct {
			QuantityChange json.RawMessage `json:"quantity_change"`
			MonthlyChange  json.RawMessage `json:"monthly_change"`
		} `json:"lines"`
		Extra json.RawMessage `json:"extra"`
	}
	must(t, json.Unmarshal(out, &got))
	var changes []string
	for _, l := range got.Lines {
		changes = append(changes, string(l.QuantityChange)+" "+string(l.MonthlyChange))
	}
	if want := []string{`2 "0.20"`, `1 "-121.50"`, `2 "0.02"`}; !slices.Equal(changes, want) {
		t.Fatalf("deltas = %q, want %q\n%s", changes, want, out)
	}
	if string(got.Extra) != `{"kept":[1,2]}` {
		t.Fatalf("the upcaster lost a field: %s", out)
	}
}

func TestSchemaVersions(t *testing.T) {
	t.Parallel()
	for typ, current := range domain.EventTypes() {
		vs := domain.SchemaVersions(typ)
		// Every version ever written stays readable: from 1 to the current.
		if len(vs) != current || vs[0] != 1 || vs[len(vs)-1] != current {
			t.Errorf("SchemaVersions(%s) = %v, want 1..%d", typ, vs, current)
		}
	}
	if vs := domain.SchemaVersions("OrderSubmitted"); !slices.Equal(vs, []int{1, 2}) {
		t.Errorf("SchemaVersions(OrderSubmitted) = %v", vs)
	}
	if vs := domain.SchemaVersions("SomethingHappened"); vs != nil {
		t.Errorf("SchemaVersions of an unknown type = %v", vs)
	}
	if _, ok := domain.CurrentSchemaVersion("SomethingHappened"); ok {
		t.Error("CurrentSchemaVersion of an unknown type is ok")
	}
}

func TestUpcastAndDecodeRefusals(t *testing.T) {
	t.Parallel()
	v2 := func(edit func(s string) string) string {
		_, _, data, err := domain.EncodeEvent(submittedSeed(t))
		must(t, err)
		return edit(string(data))
	}
	unsupported := []struct {
		name, typ string
		version   int
		current   int
		message   string
	}{
		{"a future version", "OrderSubmitted", 3, 2, "OrderSubmitted schema version 3 is newer than this code knows (current 2)"},
		{"version 0", "OrderSubmitted", 0, 2, "OrderSubmitted schema version 0 is not supported (current 2, and no upcaster from 0)"},
		{"a negative version", "OrderSubmitted", -1, 2, "not supported"},
		{"a future version of a v1 type", "SeatsChanged", 2, 1, "newer than this code knows (current 1)"},
		{"an unknown type", "SomethingHappened", 1, 0, `event type "SomethingHappened" is unknown`},
	}
	for _, tt := range unsupported {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			check := func(what string, err error) {
				t.Helper()
				var ue *domain.UnsupportedSchemaError
				if !errors.As(err, &ue) || ue.EventType != tt.typ || ue.SchemaVersion != tt.version || ue.Current != tt.current ||
					!strings.Contains(err.Error(), tt.message) {
					t.Fatalf("%s: err = %v (%#v), want an UnsupportedSchemaError saying %q", what, err, ue, tt.message)
				}
			}
			_, out, err := domain.Upcast(tt.typ, tt.version, []byte(orderSubmittedV1))
			check("Upcast", err)
			if out != nil {
				t.Errorf("Upcast refused but gave data %s", out)
			}
			e, err := domain.DecodeEvent(tt.typ, tt.version, []byte(orderSubmittedV1))
			check("DecodeEvent", err)
			if e != nil {
				t.Errorf("DecodeEvent refused but gave %+v", e)
			}
		})
	}

	bad := []struct {
		name    string
		version int
		data    string
		message string
	}{
		{"v1 data read as v2 (not upcast)", 2, orderSubmittedV1, "quantity_change is missing"},
		{"a v2 line without monthly_change", 2, v2(func(s string) string {
			return strings.Replace(s, `,"monthly_change":"23.50"`, "", 1)
		}), "lines[0] (EMAIL-SEC): monthly_change is missing"},
		{"a v2 quantity_change that contradicts the line", 2, v2(func(s string) string {
			return strings.Replace(s, `"quantity_change":18`, `"quantity_change":17`, 1)
		}), "quantity_change 17 is not current_quantity 700 - prior_quantity 682"},
		{"a v2 monthly_change that contradicts the line", 2, v2(func(s string) string {
			return strings.Replace(s, `"monthly_change":"23.50"`, `"monthly_change":"23.51"`, 1)
		}), "monthly_change 23.51 is not current_payment 2240.00 - prior_payment 2216.50"},
		{"a v1 line without prior_payment", 1, strings.Replace(orderSubmittedV1, `"prior_payment":"1125.30",`, "", 1),
			"upcast OrderSubmitted from schema version 1 to 2: lines[1] (ARCHIVE): prior_quantity, current_quantity, prior_payment and current_payment are all required"},
		{"a v1 line with a bad amount", 1, strings.Replace(orderSubmittedV1, `"prior_payment":"1125.30"`, `"prior_payment":"x"`, 1), "lines[1]"},
		{"v1 data that is not an object", 1, `[1]`, "upcast OrderSubmitted from schema version 1 to 2"},
		{"v1 data that is null", 1, `null`, "not a JSON object"},
		{"v1 data without lines", 1, `{"customer_id":"c"}`, "lines is missing"},
		{"malformed v1 data", 1, `{"lines":`, "upcast OrderSubmitted"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := domain.DecodeEvent("OrderSubmitted", tt.version, []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.message) || !strings.Contains(err.Error(), "OrderSubmitted") {
				t.Fatalf("DecodeEvent = %+v, %v; want an error saying %q", e, err, tt.message)
			}
		})
	}
}

func TestCurrencies(t *testing.T) {
	t.Parallel()
	cs := domain.Currencies()
	if !slices.IsSorted(cs) || !slices.Contains(cs, "USD") || !slices.Contains(cs, "JPY") {
		t.Fatalf("Currencies() = %v", cs)
	}
	for _, c := range cs {
		if _, err := domain.MinorUnits(c); err != nil {
			t.Errorf("MinorUnits(%s): %v", c, err)
		}
	}
}
