package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upsell-dev/upsell/internal/testdb"
)

// upsell runs the binary's entry point as a user would, on the test
// database, and returns the exit code with what it printed.
func upsell(t *testing.T, url string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return url
		}
		return ""
	}
	code = run(context.Background(), args, getenv, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCommandLineStory(t *testing.T) {
	t.Parallel()
	url := testdb.Empty(t) // the story starts from nothing, on every run
	fixture := filepath.Join("..", "..", "fixtures", "import-example.json")

	code, out, errOut := upsell(t, url, "migrate")
	if code != 0 || !strings.Contains(out, "migrations: applied 001_events, 002_reference_data") {
		t.Fatalf("first migrate: code %d, %q %q", code, out, errOut)
	}
	code, out, errOut = upsell(t, url, "migrate")
	if code != 0 || !strings.Contains(out, "nothing to apply") {
		t.Fatalf("migrate on a current schema: code %d, %q %q", code, out, errOut)
	}
	code, out, errOut = upsell(t, url, "import", fixture)
	if code != 0 || !strings.Contains(out, "customers: 4 created") {
		t.Fatalf("first import: code %d, %q %q", code, out, errOut)
	}
	code, out, _ = upsell(t, url, "import", fixture)
	if code != 0 || !strings.Contains(out, "nothing changed") {
		t.Fatalf("second import: code %d, %q", code, out)
	}

	code, out, errOut = upsell(t, url, "demo")
	if code != 0 {
		t.Fatalf("demo: code %d, %s", code, errOut)
	}
	for _, want := range []string{
		"Raise EMAIL-SEC from 682 to 700 seats",
		"-682", "-2216.50", "2240.00", // the seat change as two lines
		"prior monthly total 3341.80, new monthly total 4240.30",
		"OrderSubmitted", "SubscriptionAmended",
		"Contoso Ltd now pays 4240.30 USD a month (was 3341.80)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	code, _, errOut = upsell(t, url, "demo", "--customer", "cust-nobody")
	if code != 1 || !strings.Contains(errOut, `customer "cust-nobody" is not in the database`) {
		t.Fatalf("demo on an unknown customer: code %d, %q", code, errOut)
	}
	// The story can be told again on the same data.
	code, out, errOut = upsell(t, url, "demo")
	if code != 0 || !strings.Contains(out, "raises it to 718") || !strings.Contains(out, "SubscriptionAmended") {
		t.Fatalf("second demo: code %d\n%s\n%s", code, out, errOut)
	}
}

func TestCommandLineRefusals(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"msps": [}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		url      string
		args     []string
		code     int
		inStderr string
	}{
		{"no arguments", "x", nil, 2, ""},
		{"unknown command", "x", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"import without a file", "x", []string{"import"}, 2, "usage: upsell import FILE.json"},
		{"malformed file, named with line and column", "x", []string{"import", bad}, 1, "line 1, column 11"},
		{"missing file", "x", []string{"import", "/nonexistent.json"}, 1, "no such file"},
		{"no DATABASE_URL", "", []string{"migrate"}, 1, "DATABASE_URL is not set"},
		{"unreachable database", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2", []string{"migrate"}, 1, "does not answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := upsell(t, tt.url, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.inStderr) {
				t.Fatalf("code %d (want %d), stderr %q (want it to contain %q)", code, tt.code, errOut, tt.inStderr)
			}
		})
	}
}
