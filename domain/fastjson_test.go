package domain_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upsell-dev/upsell/domain"
)

// everyEvent is a set of events of every type of the contract, as the
// domain records them: the seed story submitted, a quote that adds and
// removes a product and is cancelled, a customer with a name and products
// outside ASCII in yen, and lines that are empty.
func everyEvent(t testing.TB) []domain.Event {
	t.Helper()
	cat := fixtureCatalog(t)
	c := contoso(t)
	events := c.Changes()
	q := submitSeed(t, c)
	events = append(events, q.Changes()...)
	events = append(events, c.Changes()[len(c.Changes())-1])

	q2 := openQuote(t, c, quote2)
	must(t, q2.AddProduct(cat, dmarc, month12, 3))
	must(t, q2.ChangeSeats(cat, dmarc, 4))
	must(t, q2.RemoveProduct(dmarc))
	must(t, q2.Save(t0.Add(time.Second)))
	must(t, q2.Cancel(t0.Add(1500*time.Millisecond)))
	events = append(events, q2.Changes()...)

	yen, err := domain.OnboardCustomer("cust-ünïcode", "msp-東京", "Émile & <Söhne> \u2028 Ltd", "JPY", []domain.Line{
		{ProductCode: "P-日本", ProductName: "Sécurité \"cloud\"", TermType: "12 Month", PerUser: true, Seats: 1, UnitPrice: domain.MustMoney("1200")},
	}, time.Date(2025, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", 9*3600)))
	must(t, err)
	events = append(events, yen.Changes()...)
	empty, err := domain.OnboardCustomer("cust-empty", "msp-northwind", "Empty", "USD", []domain.Line{}, t0)
	must(t, err)
	events = append(events, empty.Changes()...)
	events = append(events, domain.SubscriptionAmended{CustomerID: "cust-empty", QuoteID: quote2, Lines: []domain.OrderLine{},
		NewMonthlyTotal: domain.MustMoney("-0.01"), AmendedAt: t0})

	seen := map[string]bool{}
	for _, e := range events {
		seen[e.EventType()] = true
	}
	for typ := range domain.EventTypes() {
		if !seen[typ] {
			t.Fatalf("everyEvent has no %s", typ)
		}
	}
	return events
}

// jsonbForm rewrites a JSON document as PostgreSQL's jsonb gives it back:
// an object's keys ordered by length, then bytewise, and a space after
// every colon and comma. Numbers keep their text.
func jsonbForm(t testing.TB, data []byte) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, data)
	}
	var out bytes.Buffer
	var write func(v any)
	write = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			slices.SortFunc(keys, func(a, b string) int {
				if len(a) != len(b) {
					return len(a) - len(b)
				}
				return strings.Compare(a, b)
			})
			out.WriteByte('{')
			for i, k := range keys {
				if i > 0 {
					out.WriteString(", ")
				}
				kb, _ := json.Marshal(k)
				out.Write(kb)
				out.WriteString(": ")
				write(v[k])
			}
			out.WriteByte('}')
		case []any:
			out.WriteByte('[')
			for i, e := range v {
				if i > 0 {
					out.WriteString(", ")
				}
				write(e)
			}
			out.WriteByte(']')
		default:
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			out.Write(b)
		}
	}
	write(v)
	return out.Bytes()
}

// sameDecoding fails unless DecodeEvent gives for the input exactly what
// encoding/json alone gives: the same event, or the same error.
func sameDecoding(t *testing.T, typ string, version int, data []byte) {
	t.Helper()
	got, gotErr := domain.DecodeEvent(typ, version, data)
	want, wantErr := domain.DecodeEventJSON(typ, version, data)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("%s v%d %q:\nerror   %v\nwant    %v", typ, version, data, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s v%d %q:\ndecoded %#v\nwant    %#v", typ, version, data, got, want)
	}
}

// The hand-written decoder reads every event the domain records, both as
// EncodeEvent writes it and as the database gives it back, into exactly
// what encoding/json makes of it: it declines none of them but those with
// an escape in a string (else it would not be the fast path) and differs
// on none.
func TestFastDecoderAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, e := range everyEvent(t) {
		typ, ver, data, err := domain.EncodeEvent(e)
		must(t, err)
		for _, form := range [][]byte{data, jsonbForm(t, data)} {
			sameDecoding(t, typ, ver, form)
			got, ok := domain.DecodeEventFast(typ, form)
			if !ok {
				// Escapes are left to encoding/json; jsonb writes
				// them only for quotes, backslashes and control
				// characters.
				if !bytes.Contains(form, []byte{'\\'}) {
					t.Fatalf("the fast decoder declines %s %s", typ, form)
				}
				continue
			}
			want, err := domain.DecodeEventJSON(typ, ver, form)
			must(t, err)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %s:\nfast          %#v\nencoding/json %#v", typ, form, got, want)
			}
		}
	}
}

// declineCases are inputs on which the hand-written decoder must not
// decide: what encoding/json does with them (an error, or a lenient
// reading) is what DecodeEvent must do. Each is an edit of an event's
// EncodeEvent form.
var declineCases = []struct {
	name, typ string
	version   int
	data      string
}{
	{"an escape in a string", "AcknowledgementsGiven", 1,
		`{"msa_governs_order":true,"authorized_to_order":true,"by":"u-\u0073am","msp_id":"m","at":"2025-03-14T09:50:00Z"}`},
	{"an escaped quote in a string", "ProductRemoved", 1, `{"product_code":"A\"B"}`},
	{"a key in another case", "ProductRemoved", 1, `{"Product_Code":"DMARC"}`},
	{"an unknown key", "ProductRemoved", 1, `{"product_code":"DMARC","note":"x"}`},
	{"a repeated key", "ProductRemoved", 1, `{"product_code":"A","product_code":"B"}`},
	{"a repeated amount", "SeatsChanged", 1, `{"product_code":"A","unit_price":"1.00","unit_price":"x"}`},
	{"null for a string", "ProductRemoved", 1, `{"product_code":null}`},
	{"null for an amount", "SeatsChanged", 1, `{"product_code":"A","unit_price":null}`},
	{"null for the lines", "OrderReviewed", 1, `{"lines":null,"total_users":1}`},
	{"null for a time", "QuoteSaved", 1, `{"saved_at":null}`},
	{"null for an id", "SubscriptionAmended", 1, `{"quote_id":null}`},
	{"null as the document", "QuoteSaved", 1, `null`},
	{"an array as the document", "QuoteSaved", 1, `[]`},
	{"a string as the document", "QuoteSaved", 1, `"x"`},
	{"a fraction for seats", "SeatsChanged", 1, `{"product_code":"A","new_seats":700.0}`},
	{"an exponent for seats", "SeatsChanged", 1, `{"product_code":"A","new_seats":7e2}`},
	{"a string for seats", "SeatsChanged", 1, `{"product_code":"A","new_seats":"700"}`},
	{"seats beyond int64", "SeatsChanged", 1, `{"product_code":"A","new_seats":99999999999999999999}`},
	{"seats of 19 digits", "SeatsChanged", 1, `{"product_code":"A","new_seats":1000000000000000000}`},
	{"negative zero seats", "SeatsChanged", 1, `{"product_code":"A","new_seats":-0}`},
	{"a leading zero", "SeatsChanged", 1, `{"product_code":"A","new_seats":0700}`},
	{"a lone minus", "SeatsChanged", 1, `{"product_code":"A","new_seats":-}`},
	{"a number for a bool", "ProductAdded", 1, `{"product_code":"A","per_user":1}`},
	{"a bool cut short", "ProductAdded", 1, `{"product_code":"A","per_user":tru}`},
	{"a bool run on", "ProductAdded", 1, `{"product_code":"A","per_user":truex}`},
	{"an amount as a number", "SeatsChanged", 1, `{"product_code":"A","unit_price":3.20}`},
	{"an amount as an exponent", "SeatsChanged", 1, `{"product_code":"A","unit_price":32e-1}`},
	{"an amount that is not one", "SeatsChanged", 1, `{"product_code":"A","unit_price":"3,20"}`},
	{"an amount as an object", "SeatsChanged", 1, `{"product_code":"A","unit_price":{}}`},
	{"a time that is not one", "QuoteSaved", 1, `{"saved_at":"yesterday"}`},
	{"a time as a number", "QuoteSaved", 1, `{"saved_at":20250314}`},
	{"a time without its zone", "QuoteSaved", 1, `{"saved_at":"2025-03-14T09:50:00"}`},
	{"an id that is not one", "SubscriptionAmended", 1, `{"quote_id":"not-a-uuid"}`},
	{"an id in braces", "SubscriptionAmended", 1, `{"quote_id":"{0195a1d2-7c3e-7f00-8000-000000000001}"}`},
	{"an id as a number", "SubscriptionAmended", 1, `{"quote_id":1}`},
	{"invalid UTF-8", "ProductRemoved", 1, "{\"product_code\":\"A\xff\"}"},
	{"a control character", "ProductRemoved", 1, "{\"product_code\":\"A\tB\"}"},
	{"trailing data", "ProductRemoved", 1, `{"product_code":"A"}x`},
	{"a second document", "ProductRemoved", 1, `{"product_code":"A"} {}`},
	{"trailing whitespace", "ProductRemoved", 1, "{\"product_code\":\"A\"} \n\t"},
	{"whitespace everywhere", "ProductRemoved", 1, " {\n\t\"product_code\" \r: \"A\" \n} "},
	{"a trailing comma", "ProductRemoved", 1, `{"product_code":"A",}`},
	{"a trailing comma in an array", "OrderReviewed", 1, `{"lines":[{"product_code":"A"},]}`},
	{"a missing comma", "AcknowledgementsGiven", 1, `{"by":"a" "msp_id":"b"}`},
	{"a missing colon", "ProductRemoved", 1, `{"product_code" "A"}`},
	{"a leading comma", "ProductRemoved", 1, `{,"product_code":"A"}`},
	{"an empty object", "ProductRemoved", 1, `{}`},
	{"an unclosed object", "ProductRemoved", 1, `{"product_code":"A"`},
	{"an unclosed string", "ProductRemoved", 1, `{"product_code":"A`},
	{"nothing", "ProductRemoved", 1, ``},
	{"an empty array of lines", "OrderReviewed", 1, `{"lines":[]}`},
	{"an object for the lines", "OrderReviewed", 1, `{"lines":{}}`},
	{"a line with an unknown key", "CustomerOnboarded", 1, `{"lines":[{"product_code":"A","colour":"red"}]}`},
	{"a submitted line without its deltas", "OrderSubmitted", 2,
		`{"lines":[{"product_code":"A","prior_quantity":1,"current_quantity":2,"prior_payment":"1.00","current_payment":"2.00"}]}`},
	{"a submitted line whose deltas disagree", "OrderSubmitted", 2,
		`{"lines":[{"product_code":"A","prior_quantity":1,"current_quantity":2,"prior_payment":"1.00","current_payment":"2.00","quantity_change":1,"monthly_change":"1.01"}]}`},
	{"a submitted line with its deltas", "OrderSubmitted", 2,
		`{"lines":[{"product_code":"A","prior_quantity":1,"current_quantity":2,"prior_payment":"1.00","current_payment":"2.00","quantity_change":1,"monthly_change":"1.0"}]}`},
	{"a submitted line with a repeated delta", "OrderSubmitted", 2,
		`{"lines":[{"product_code":"A","quantity_change":0,"quantity_change":0,"monthly_change":"0"}]}`},
	{"version 1 of OrderSubmitted", "OrderSubmitted", 1,
		`{"lines":[{"product_code":"A","prior_quantity":1,"current_quantity":2,"prior_payment":"1.00","current_payment":"2.00"}]}`},
}

// Where the hand-written decoder cannot vouch for giving what
// encoding/json gives, DecodeEvent gives what encoding/json gives.
func TestFastDecoderDeclinesToEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, tt := range declineCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sameDecoding(t, tt.typ, tt.version, []byte(tt.data))
			if e, ok := domain.DecodeEventFast(tt.typ, []byte(tt.data)); ok {
				want, err := domain.DecodeEventJSON(tt.typ, tt.version, []byte(tt.data))
				if err != nil || !reflect.DeepEqual(e, want) {
					t.Fatalf("the fast decoder gives %#v, encoding/json %#v, %v", e, want, err)
				}
			}
		})
	}
}

// FuzzDecodeEvent: on any input, DecodeEvent (the hand-written decoder,
// then encoding/json when it declines) gives exactly what encoding/json
// alone gives, the same event or the same error. Seeded with every event
// the domain's stories record (as written and as the database gives them
// back), the edits of declineCases, and real events of a seeded log
// (testdata/fuzz/FuzzDecodeEvent).
//
//	go test -run '^$' -fuzz '^FuzzDecodeEvent$' -fuzztime 2m ./domain/
func FuzzDecodeEvent(f *testing.F) {
	for _, e := range everyEvent(f) {
		typ, ver, data, err := domain.EncodeEvent(e)
		must(f, err)
		f.Add(typ, ver, data)
		f.Add(typ, ver, jsonbForm(f, data))
	}
	for _, tt := range declineCases {
		f.Add(tt.typ, tt.version, []byte(tt.data))
	}
	f.Fuzz(func(t *testing.T, typ string, version int, data []byte) {
		sameDecoding(t, typ, version, data)
	})
}

func BenchmarkDecodeEventJSON(b *testing.B) {
	typ, ver, data, err := domain.EncodeEvent(reviewedEvent(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := domain.DecodeEventJSON(typ, ver, data); err != nil {
			b.Fatal(err)
		}
	}
}
