package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// secretForms are the ways an API key could show in output: the key, and
// its SHA-256 as stored (raw, hex either case, PostgreSQL's bytea text,
// base64). The hash cannot stand in for the key, but it names the key for
// good and, for a short key, is enough to find it offline.
func secretForms(key string) []string {
	h := importer.HashAPIKey(key)
	x := hex.EncodeToString(h)
	return []string{key, string(h), x, strings.ToUpper(x), `\x` + x,
		base64.StdEncoding.EncodeToString(h), base64.RawURLEncoding.EncodeToString(h)}
}

func wantNoSecrets(t *testing.T, what, out string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		for i, form := range secretForms(k) {
			if strings.Contains(out, form) {
				kind := "the key"
				if i > 0 {
					kind = "the hash of the key"
				}
				t.Errorf("%s holds %s %q:\n%s", what, kind, k, out)
			}
		}
	}
}

// writeImport writes f as an import file in the test's folder.
func writeImport(t *testing.T, name string, f any) string {
	t.Helper()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestNoKeyInCommandOutput: `upsell import` of files with API keys, good
// and refused, and `upsell serve` answering requests with good, unknown
// and oddly sent keys and Idempotency-Keys, print no key and no key's
// hash, to standard output or to the log.
func TestNoKeyInCommandOutput(t *testing.T) {
	t.Parallel()
	url := testdb.Empty(t)
	if code, out, errOut := upsell(t, url, "migrate"); code != 0 {
		t.Fatalf("migrate: code %d, %q %q", code, out, errOut)
	}
	raw, err := os.ReadFile("../../fixtures/import-example.json")
	if err != nil {
		t.Fatal(err)
	}
	f, err := importer.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	// Keys of the test's own, so that nothing else could print them.
	sfx := strings.ReplaceAll(uuid.NewString(), "-", "")
	var keys []string
	for i := range f.MSPs {
		for j := range f.MSPs[i].Users {
			k := fmt.Sprintf("key-%d-%d-%s", i, j, sfx)
			f.MSPs[i].Users[j].APIKey = k
			keys = append(keys, k)
		}
	}
	alex, kim := f.MSPs[0].Users[0].APIKey, f.MSPs[1].Users[0].APIKey
	fresh := "fresh-" + sfx // a key no file gets to keep

	var output strings.Builder // everything every command printed
	cmd := func(wantCode int, args ...string) string {
		t.Helper()
		code, out, errOut := upsell(t, url, args...)
		if code != wantCode {
			t.Errorf("upsell %s: code %d, want %d; stdout %q, stderr %q", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		output.WriteString(out + errOut)
		return out + errOut
	}

	good := writeImport(t, "good.json", f)
	if out := cmd(0, "import", good); !strings.Contains(out, "imported") {
		t.Errorf("import: %q", out)
	}
	if out := cmd(0, "import", good); !strings.Contains(out, "nothing changed") {
		t.Errorf("import again: %q", out)
	}

	// Files that are refused, with their keys in them: the refusals say
	// where the fault is, never what the key is.
	refused := func(name string, change func(f *importer.File)) {
		t.Helper()
		g, err := importer.Parse(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		for i := range g.MSPs {
			for j := range g.MSPs[i].Users {
				g.MSPs[i].Users[j].APIKey = f.MSPs[i].Users[j].APIKey
			}
		}
		change(g)
		if out := cmd(1, "import", writeImport(t, name+".json", g)); !strings.Contains(out, "api_key") && !strings.Contains(out, "API key") {
			t.Errorf("import of %s: the refusal does not name the key's place: %q", name, out)
		}
	}
	refused("same-key-twice", func(g *importer.File) { g.MSPs[0].Users[1].APIKey = alex })
	refused("key-too-short", func(g *importer.File) { g.MSPs[0].Users[1].APIKey = sfx[:importer.MinAPIKeyLength-1] })
	refused("key-of-another-user", func(g *importer.File) {
		// A new user given the key that u-kim (not in this file) keeps in
		// the database.
		g.MSPs = g.MSPs[:1]
		g.MSPs[0].Users = append(g.MSPs[0].Users, importer.User{ID: "u-new", Name: "New User", APIKey: kim})
	})
	// Malformed files around a key.
	for name, text := range map[string]string{
		"syntax-after-key":  strings.Replace(string(raw), `"nw-alex-5f2c9e1d7a"`, `"`+alex+`" "`+fresh+`"`, 1),
		"bad-escape-in-key": strings.Replace(string(raw), `"nw-alex-5f2c9e1d7a"`, `"`+alex+`\q`+fresh+`"`, 1),
		"key-not-a-string":  strings.Replace(string(raw), `"nw-alex-5f2c9e1d7a"`, `["`+alex+`"]`, 1),
		"unknown-field":     strings.Replace(string(raw), `"api_key": "nw-alex-5f2c9e1d7a"`, `"api_key": "`+alex+`", "apikey": "`+fresh+`"`, 1),
	} {
		if !strings.Contains(text, alex) {
			t.Fatalf("%s: the fixture changed: no key to replace", name)
		}
		path := filepath.Join(t.TempDir(), name+".json")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if out := cmd(1, "import", path); !strings.Contains(out, "line ") {
			t.Errorf("import of %s: %q, want a refusal with its line", name, out)
		}
	}
	wantNoSecrets(t, "the output of upsell import", output.String(), append(keys, fresh)...)

	// The server's log, for requests with good keys, unknown ones and
	// keys sent in ways that are refused.
	srv := startServe(t, url)
	api := newAPIClient(t, srv.base)
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, _, body := api.do("GET", "/v1/customers/cust-contoso", alex, "")
		if status == 200 {
			break
		}
		if status != 404 || time.Now().After(deadline) {
			t.Fatalf("GET /v1/customers/cust-contoso: %d %s", status, body)
		}
		time.Sleep(20 * time.Millisecond) // the projector catches up
	}
	unknown := "nobody-" + sfx
	for _, k := range []string{alex, kim, unknown, alex + " ", "  " + alex, alex[:len(alex)-1]} {
		api.do("GET", "/v1/customers", k, "")
	}
	status, _, body := api.do("GET", "/v1/customers/cust-contoso/change-quotes", alex, "")
	if status != 200 {
		t.Fatalf("list quotes: %d %s", status, body)
	}
	send := func(method, path string, header ...string) int {
		t.Helper()
		req, err := http.NewRequest(method, srv.base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		resp, err := api.http.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	idem := "idem-" + sfx
	for range 2 { // the second is a replay
		if s := send("POST", "/v1/customers/cust-contoso/change-quotes", "Authorization", "Bearer "+alex, "Idempotency-Key", idem); s != 201 {
			t.Errorf("open a quote with an Idempotency-Key: %d", s)
		}
	}
	for _, h := range [][]string{
		{"Authorization", "bearer\t" + alex},
		{"Authorization", alex},
		{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("u-alex:"+alex))},
		{"Authorization", "Bearer " + alex + ", Bearer " + kim},
		{"Authorization", "Bearer " + unknown, "Idempotency-Key", idem},
		{"X-API-Key", alex},
		{"Cookie", "api_key=" + alex},
	} {
		send("POST", "/v1/customers/cust-contoso/change-quotes", h...)
	}
	srv.cancel()
	select {
	case code := <-srv.exit:
		srv.exit <- code // for startServe's cleanup
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not stop within 15 s")
	}
	log := srv.stdout.String() + srv.stderr.String()
	for _, want := range []string{"status=201", "status=401", "user_id=u-alex", "msg=stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q, so the test proves less than it says:\n%s", want, log)
		}
	}
	wantNoSecrets(t, "the log of upsell serve", log, append(keys, fresh, unknown)...)
}
