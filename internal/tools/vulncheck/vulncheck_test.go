package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stream builds a govulncheck -json stream: a config of a symbol-level
// scan, then the messages given.
func stream(t *testing.T, msgs ...any) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ") // as govulncheck writes it
	all := append([]any{map[string]any{"config": map[string]any{"protocol_version": "v1.0.0", "scan_level": "symbol"}}}, msgs...)
	for _, m := range all {
		if err := enc.Encode(m); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func osvMsg(id, summary string) any {
	return map[string]any{"osv": map[string]any{"id": id, "summary": summary}}
}

// called is a symbol-level finding: our handlers.New calls pkg.fn of
// module mod.
func called(id, mod, pkg, fn, fixed string) any {
	return map[string]any{"finding": map[string]any{
		"osv": id, "fixed_version": fixed,
		"trace": []any{
			map[string]any{"module": mod, "version": "v1.26.8", "package": pkg, "function": fn},
			map[string]any{"module": "github.com/upsell-dev/upsell", "package": "github.com/upsell-dev/upsell/handlers", "function": "New",
				"position": map[string]any{"filename": "handlers/server.go", "line": 93, "column": 15}},
		},
	}}
}

// imported is a package-level finding: imported, not called.
func imported(id, mod, pkg string) any {
	return map[string]any{"finding": map[string]any{
		"osv": id, "trace": []any{map[string]any{"module": mod, "version": "v1.26.8", "package": pkg}},
	}}
}

const list = `# comment
GO-2026-6603  net/http: fixed in Go 1.26.9, not on this machine  2027-01-31

GO-2026-6809  crypto/x509: fixed in Go 1.26.10  2026-12-01
`

func TestJudge(t *testing.T) {
	type want struct{ id, module, kind string }
	tests := []struct {
		name     string
		today    string
		partial  bool
		findings []any
		want     []want
		failed   int
	}{{
		name:  "accepted",
		today: "2026-11-25",
		findings: []any{
			osvMsg("GO-2026-6603", "HTTP/2 server memory exhaustion"),
			called("GO-2026-6603", stdlib, "net/http", "ServeHTTP", "v1.26.9"),
			called("GO-2026-6603", stdlib, "net/http", "Write", "v1.26.9"), // one verdict per ID and module
			called("GO-2026-6809", stdlib, "crypto/x509", "Verify", "v1.26.10"),
		},
		want: []want{{"GO-2026-6603", stdlib, kindAccepted}, {"GO-2026-6809", stdlib, kindAccepted}},
	}, {
		name:  "accepted on its review-by date",
		today: "2026-12-01",
		findings: []any{
			called("GO-2026-6603", stdlib, "net/http", "ServeHTTP", "v1.26.9"),
			called("GO-2026-6809", stdlib, "crypto/x509", "Verify", "v1.26.10"),
		},
		want: []want{{"GO-2026-6603", stdlib, kindAccepted}, {"GO-2026-6809", stdlib, kindAccepted}},
	}, {
		name:  "not accepted",
		today: "2026-11-25",
		findings: []any{
			called("GO-2026-6603", stdlib, "net/http", "ServeHTTP", "v1.26.9"),
			called("GO-2026-6809", stdlib, "crypto/x509", "Verify", "v1.26.10"),
			called("GO-2026-7000", "github.com/jackc/pgx/v5", "github.com/jackc/pgx/v5/pgconn", "Connect", "v5.9.0"),
		},
		want: []want{
			{"GO-2026-6603", stdlib, kindAccepted},
			{"GO-2026-6809", stdlib, kindAccepted},
			{"GO-2026-7000", "github.com/jackc/pgx/v5", kindNotAccepted},
		},
		failed: 1,
	}, {
		name:  "accepted ID reached through a module too",
		today: "2026-11-25",
		findings: []any{
			called("GO-2026-6603", stdlib, "net/http", "ServeHTTP", "v1.26.9"),
			called("GO-2026-6603", "golang.org/x/net", "golang.org/x/net/http2", "ServeConn", "v0.60.0"),
			called("GO-2026-6809", stdlib, "crypto/x509", "Verify", "v1.26.10"),
		},
		want: []want{
			{"GO-2026-6603", "golang.org/x/net", kindNotStdlib},
			{"GO-2026-6603", stdlib, kindAccepted},
			{"GO-2026-6809", stdlib, kindAccepted},
		},
		failed: 1,
	}, {
		name:  "expired",
		today: "2026-12-02",
		findings: []any{
			called("GO-2026-6603", stdlib, "net/http", "ServeHTTP", "v1.26.9"),
			called("GO-2026-6809", stdlib, "crypto/x509", "Verify", "v1.26.10"),
		},
		want:   []want{{"GO-2026-6603", stdlib, kindAccepted}, {"GO-2026-6809", stdlib, kindExpired}},
		failed: 1,
	}, {
		name:  "gone",
		today: "2026-11-25",
		findings: []any{
			called("GO-2026-6603", stdlib, "net/http", "ServeHTTP", "v1.26.9"),
			imported("GO-2026-6809", stdlib, "crypto/x509"), // imported, no longer called
		},
		want: []want{{"GO-2026-6603", stdlib, kindAccepted}, {"GO-2026-6809", "", kindGone}},
	}, {
		name:     "gone in a partial check",
		today:    "2026-11-25",
		partial:  true,
		findings: []any{called("GO-2026-6603", stdlib, "net/http", "ServeHTTP", "v1.26.9")},
		want:     []want{{"GO-2026-6603", stdlib, kindAccepted}, {"GO-2026-6809", "", kindOutOfScope}},
	}, {
		name:     "gone and expired",
		today:    "2026-12-02",
		findings: []any{called("GO-2026-6603", stdlib, "net/http", "ServeHTTP", "v1.26.9")},
		want:     []want{{"GO-2026-6603", stdlib, kindAccepted}, {"GO-2026-6809", "", kindGoneExpired}},
		failed:   1,
	}, {
		name:  "nothing found",
		today: "2026-11-25",
		want:  []want{{"GO-2026-6603", "", kindGone}, {"GO-2026-6809", "", kindGone}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := readReport(strings.NewReader(stream(t, tt.findings...)))
			if err != nil {
				t.Fatal(err)
			}
			accepted, err := parseAccepted(strings.NewReader(list), "accepted.txt")
			if err != nil {
				t.Fatal(err)
			}
			today, _ := time.Parse(time.DateOnly, tt.today)
			res := judge(rep, accepted, today, "accepted.txt", tt.partial)
			var got []want
			for _, v := range res.Verdicts {
				got = append(got, want{v.ID, v.Module, v.Kind})
				if v.Fail != strings.HasPrefix(v.Text, "FAIL: ") {
					t.Errorf("%s: Fail %v, text %q", v.ID, v.Fail, v.Text)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("verdicts %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("verdict %d: %v, want %v", i, got[i], tt.want[i])
				}
			}
			if res.Failed != tt.failed {
				t.Errorf("failed %d, want %d", res.Failed, tt.failed)
			}
		})
	}
}

func TestWarningCarriesReason(t *testing.T) {
	rep, err := readReport(strings.NewReader(stream(t,
		osvMsg("GO-2026-6603", "HTTP/2 server memory exhaustion"),
		called("GO-2026-6603", stdlib, "net/http", "ServeHTTP", "v1.26.9"),
	)))
	if err != nil {
		t.Fatal(err)
	}
	accepted, err := parseAccepted(strings.NewReader(list), "accepted.txt")
	if err != nil {
		t.Fatal(err)
	}
	today, _ := time.Parse(time.DateOnly, "2026-11-25")
	var out bytes.Buffer
	judge(rep, accepted, today, "accepted.txt", false).print(&out, "vulncheck: ")
	for _, s := range []string{
		"vulncheck: WARNING: GO-2026-6603 (net/http go1.26.8, fixed in go1.26.9) is reachable; accepted until 2027-01-31: net/http: fixed in Go 1.26.9, not on this machine\n",
		"vulncheck:     HTTP/2 server memory exhaustion\n",
		"vulncheck:     call path: handlers/server.go:93:15: handlers.New calls http.ServeHTTP\n",
		"vulncheck: WARNING: GO-2026-6809 (accepted.txt:4) is no longer found: remove it from the list\n",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q; it is:\n%s", s, out.String())
		}
	}
}

func TestRunGateExitStatus(t *testing.T) {
	dir := t.TempDir()
	listFile := filepath.Join(dir, "accepted.txt")
	if err := os.WriteFile(listFile, []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	today, _ := time.Parse(time.DateOnly, "2026-11-25")
	ok := stream(t,
		called("GO-2026-6603", stdlib, "net/http", "ServeHTTP", "v1.26.9"),
		called("GO-2026-6809", stdlib, "crypto/x509", "Verify", "v1.26.10"))
	bad := stream(t, called("GO-2026-7000", "example.com/m", "example.com/m", "F", "v1.2.3"))
	tests := []struct {
		name, in string
		want     int
	}{
		{"all accepted", ok, 0},
		{"not accepted", bad, 1},
		{"no output", "", 2},
		{"not JSON", "govulncheck: loading packages: error", 2},
		{"not a symbol-level scan", `{"config": {"scan_level": "package"}}`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := runGate(listFile, strings.NewReader(tt.in), &bytes.Buffer{}, today, false); got != tt.want {
				t.Errorf("exit status %d, want %d", got, tt.want)
			}
		})
	}
	if got := runGate(filepath.Join(dir, "missing.txt"), strings.NewReader(ok), &bytes.Buffer{}, today, false); got != 2 {
		t.Errorf("missing list: exit status %d, want 2", got)
	}
}

func TestParseAcceptedErrors(t *testing.T) {
	for _, in := range []string{
		"GO-2026-6603  2027-01-31",                                 // no reason
		"GO-2026-6603  a reason",                                   // no date
		"GO-2026-6603  a reason  31/01/2027",                       // not YYYY-MM-DD
		"GO-2026-6603  a reason  2027-02-30",                       // no such day
		"CVE-2026-1234  a reason  2027-01-31",                      // not a Go ID
		"GO-2026-6603  a  2027-01-31\nGO-2026-6603  b  2027-01-31", // twice
	} {
		if _, err := parseAccepted(strings.NewReader(in), "accepted.txt"); err == nil {
			t.Errorf("parseAccepted(%q) succeeded", in)
		}
	}
}

func TestSemverLess(t *testing.T) {
	for _, tt := range []struct {
		v, w string
		want bool
	}{
		{"", "1.0.0", true}, // invalid < valid: the start of latestFixed
		{"1.0.0", "", false},
		{"1.26.9", "1.26.10", true},
		{"1.26.10", "1.26.9", false},
		{"1.27.0-0", "1.27.0", true},
		{"1.26.10", "1.27.0-0", true},
		{"0.58.1-0.20261009181718-2f1f834330b2", "0.58.1", true},
		{"0.58.0", "0.58.1-0.20261009181718-2f1f834330b2", true},
		{"1.0.0-alpha", "1.0.0-alpha.1", true},
		{"1.0.0-alpha.1", "1.0.0-alpha.beta", true},
		{"1.0.0-beta.2", "1.0.0-beta.11", true},
		{"1.0.0-rc.1", "1.0.0", true},
		{"1.0.0+build", "1.0.0", false},
		{"1.0.0", "1.0.0+build", false},
		{"v1.2", "1.2.1", true},
		{"1.2.3", "1.02.4", false}, // invalid
	} {
		if got := semverLess(tt.v, tt.w); got != tt.want {
			t.Errorf("semverLess(%q, %q) = %v, want %v", tt.v, tt.w, got, tt.want)
		}
	}
}

func TestBuildIndex(t *testing.T) {
	osvDir := t.TempDir()
	entries := map[string]string{
		"GO-2026-6809": `{"id":"GO-2026-6809","modified":"0001-01-01T00:00:00Z","affected":[{"package":{"name":"stdlib"},
			"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.26.10"},{"introduced":"1.27.0-0"},{"fixed":"1.27.3"}]}]}]}`,
		"GO-2026-6603": `{"id":"GO-2026-6603","modified":"2026-11-01T10:00:00Z","affected":[
			{"package":{"name":"stdlib"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.26.9"}]}]},
			{"package":{"name":"golang.org/x/net"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"0.60.0"},{"introduced":"0.61.0"}]}]}]}`,
	}
	for id, e := range entries {
		if err := os.WriteFile(filepath.Join(osvDir, id+".json"), []byte(e), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "db")
	stamp, _ := parseTime("2026-11-05T23:49:57Z")
	n, err := buildIndex(osvDir, out, stamp)
	if err != nil || n != 2 {
		t.Fatalf("buildIndex: %d, %v", n, err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got, want := read("index/db.json"), `{"modified":"2026-11-05T23:49:57Z"}`; got != want {
		t.Errorf("db.json %s, want %s", got, want)
	}
	// Fixed: the latest fix, none when reintroduced after it.
	want := `[{"path":"golang.org/x/net","vulns":[{"id":"GO-2026-6603","modified":"2026-11-01T10:00:00Z"}]},` +
		`{"path":"stdlib","vulns":[{"id":"GO-2026-6603","modified":"2026-11-01T10:00:00Z","fixed":"1.26.9"},` +
		`{"id":"GO-2026-6809","modified":"0001-01-01T00:00:00Z","fixed":"1.27.3"}]}]`
	if got := read("index/modules.json"); got != want {
		t.Errorf("modules.json\n%s\nwant\n%s", got, want)
	}
	if got := read("ID/GO-2026-6809.json"); got != entries["GO-2026-6809"] {
		t.Errorf("ID/GO-2026-6809.json is not the OSV file: %s", got)
	}

	// A file not named after its entry is refused.
	if err := os.WriteFile(filepath.Join(osvDir, "GO-2026-0001.json"), []byte(`{"id":"GO-2026-0002"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := buildIndex(osvDir, filepath.Join(t.TempDir(), "db"), stamp); err == nil {
		t.Error("buildIndex accepted GO-2026-0001.json of entry GO-2026-0002")
	}
}
