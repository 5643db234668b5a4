package jsontext

import (
	"encoding/json"
	"testing"
)

var samples = []string{"", "plain", `quote " and \ back`, "tab\tnl\ncr\rbs\bff\f nul\x00 us\x1f", "<a href='x'>&amp;</a>",
	"Émile – 東京 🙂", "\u2028\u2029", "bad \xff utf8 \xc3", "\x7f del"}

// AppendString writes what encoding/json writes for a string.
func TestAppendStringIsEncodingJSONs(t *testing.T) {
	for _, s := range samples {
		want, _ := json.Marshal(s)
		if got := AppendString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("%q: got %s, want x%s", s, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range samples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	})
}
