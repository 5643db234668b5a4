package eventstore

import (
	"encoding/json"
	"testing"
)

// decodeMetadata gives what json.Unmarshal gives, error or not, for the
// metadata the service writes and for anything else.
func FuzzDecodeMetadata(f *testing.F) {
	for _, s := range []string{
		`{"msp_id": "msp-1", "user_id": "u-1", "causation_id": "c", "correlation_id": "k"}`,
		`{"msp_id":"msp-1","user_id":"u-1"}`, `{}`, ` { } `, `{"msp_id": "a", "msp_id": "b"}`,
		`{"MSP_ID": "a"}`, `{"msp_id": null}`, `{"msp_id": "\u00e9"}`, `{"msp_id": "é"}`, `{"other": "x"}`,
		`{"msp_id": 1}`, `{"msp_id": "a",}`, `{"msp_id": "a"} x`, `[]`, `null`, ``, `{"msp_id" "a"}`,
		"{\"msp_id\": \"a\tb\"}", `{"user_id": "a\"b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fast, want Metadata
		fastErr := decodeMetadata(raw, &fast)
		wantErr := json.Unmarshal(raw, &want)
		if (fastErr == nil) != (wantErr == nil) || fast != want {
			t.Errorf("%q: got %+v, %v; json.Unmarshal gives %+v, %v", raw, fast, fastErr, want, wantErr)
		}
	})
}

// The metadata the service writes, as jsonb prints it, takes the fast way.
func TestFastMetadataTakesWhatTheServiceWrites(t *testing.T) {
	raw := []byte(`{"msp_id": "msp-0042", "user_id": "user-0815", "causation_id": "1c8f", "correlation_id": "0b7e"}`)
	var m Metadata
	if !fastMetadata(raw, &m) {
		t.Fatalf("%s: not read the fast way", raw)
	}
	if want := (Metadata{MSPID: "msp-0042", UserID: "user-0815", CausationID: "1c8f", CorrelationID: "0b7e"}); m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}
}

func BenchmarkDecodeMetadata(b *testing.B) {
	raw := []byte(`{"msp_id": "msp-0042", "user_id": "user-0815", "causation_id": "1c8f7e4d-6b2a-4d3f-8e9c-8a7b6f5e4d3c", "correlation_id": "0b7e6d3c-5a1f-4c2e-9d8b-7f6a5e4d3c2b"}`)
	for _, bc := range []struct {
		name   string
		decode func([]byte, *Metadata) error
	}{
		{"fast", decodeMetadata},
		{"encoding-json", func(raw []byte, m *Metadata) error { return json.Unmarshal(raw, m) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var m Metadata
				if err := bc.decode(raw, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
