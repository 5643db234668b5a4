package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsell-dev/upsell/internal/testdb"
)

// syncBuffer is a bytes.Buffer that the command's goroutines may write
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// envWith is the environment of a command run on the database at url.
func envWith(url string) env {
	return func(k string) string {
		if k == "DATABASE_URL" {
			return url
		}
		return ""
	}
}

// served is an `upsell serve` running in the background.
type served struct {
	base           string // http://host:port
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	exit           chan int // the exit code, once run returns
}

var servingLine = regexp.MustCompile(`upsell: serving the API on (http://\S+)`)

// startServe runs `upsell serve --addr 127.0.0.1:0` on url and waits for it
// to say where it listens. The test's cleanup stops it if the test did not.
func startServe(t *testing.T, url string) *served {
	t.Helper()
	return startServeWith(t, url)
}

// startServeWith is startServe with more flags.
func startServeWith(t *testing.T, url string, flags ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, exit: make(chan int, 1)}
	args := append([]string{"serve", "--addr", "127.0.0.1:0"}, flags...)
	go func() { s.exit <- run(ctx, args, envWith(url), s.stdout, s.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.exit:
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop within 30 s of its cleanup; log:\n%s", s.stderr.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m := servingLine.FindStringSubmatch(s.stdout.String()); m != nil {
			s.base = m[1]
			return s
		}
		select {
		case code := <-s.exit:
			s.exit <- code
			t.Fatalf("serve returned %d before serving; stdout %q, stderr:\n%s", code, s.stdout.String(), s.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not say where it listens within 15 s; stdout %q, stderr:\n%s", s.stdout.String(), s.stderr.String())
		}
	}
}

// apiClient sends requests to a served API and remembers the request id of
// every answer, to match them with the log.
type apiClient struct {
	t          *testing.T
	base       string
	http       *http.Client
	requestIDs []string
}

func newAPIClient(t *testing.T, base string) *apiClient {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &apiClient{t: t, base: base, http: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

// do sends one request (with the API key, when not empty) and returns the
// answer's status, headers and body.
func (a *apiClient) do(method, path, key, body string) (int, http.Header, []byte) {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("%s %s: read the body: %v", method, path, err)
	}
	id := resp.Header.Get("X-Request-ID")
	if id == "" {
		a.t.Errorf("%s %s: the answer has no X-Request-ID", method, path)
	}
	a.requestIDs = append(a.requestIDs, id)
	return resp.StatusCode, resp.Header, b
}

const alexKey = "nw-alex-5f2c9e1d7a" // u-alex of msp-northwind, in the fixture

func TestServeEndToEnd(t *testing.T) {
	t.Parallel()
	url := testdb.Empty(t)
	if code, out, errOut := upsell(t, url, "migrate"); code != 0 {
		t.Fatalf("migrate: code %d, %q %q", code, out, errOut)
	}
	if code, out, errOut := upsell(t, url, "import", "../../fixtures/import-example.json"); code != 0 {
		t.Fatalf("import: code %d, %q %q", code, out, errOut)
	}

	srv := startServe(t, url)
	api := newAPIClient(t, srv.base)

	status, hdr, body := api.do("GET", "/healthz", "", "")
	var health map[string]any
	if err := json.Unmarshal(body, &health); status != 200 || err != nil || len(health) != 1 || health["status"] != "ok" {
		t.Errorf("GET /healthz: %d %s (want 200 {\"status\":\"ok\"})", status, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET /healthz: Content-Type %q", ct)
	}

	if status, _, body := api.do("GET", "/readyz", "", ""); status != 200 {
		t.Errorf("GET /readyz: %d %s (want 200: migrated, database up)", status, body)
	}

	status, _, body = api.do("GET", "/openapi.json", "", "")
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); status != 200 || err != nil {
		t.Errorf("GET /openapi.json: %d, not JSON (%v): %.200s", status, err, body)
	} else if doc["openapi"] != "3.1.0" {
		t.Errorf("GET /openapi.json: \"openapi\" is %v, want \"3.1.0\"", doc["openapi"])
	}

	// The customers projector runs inside serve, asynchronously: the list
	// fills once it has read the imported events.
	deadline := time.Now().Add(15 * time.Second)
	for found := false; !found; {
		status, _, body = api.do("GET", "/v1/customers", alexKey, "")
		var page struct {
			Customers []struct{ ID, Name string } `json:"customers"`
		}
		if status != 200 {
			t.Fatalf("GET /v1/customers: %d %s", status, body)
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("GET /v1/customers: %v: %s", err, body)
		}
		for _, c := range page.Customers {
			if c.ID == "cust-contoso" && c.Name == "Contoso Ltd" {
				found = true
			}
		}
		if !found {
			if time.Now().After(deadline) {
				t.Fatalf("GET /v1/customers does not list Contoso Ltd after 15 s: %s\nlog:\n%s", body, srv.stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// An unknown key is refused, and is not logged either.
	if status, _, body := api.do("GET", "/v1/customers", "not-a-key-4d7e", ""); status != 401 {
		t.Errorf("GET /v1/customers with an unknown key: %d %s (want 401)", status, body)
	}
	// An unknown path is logged and counted too.
	if status, _, body := api.do("GET", "/nowhere", "", ""); status != 404 {
		t.Errorf("GET /nowhere: %d %s (want 404)", status, body)
	}

	status, hdr, body = api.do("POST", "/v1/customers/cust-contoso/change-quotes", alexKey, "")
	var opened struct {
		QuoteID string `json:"quote_id"`
		Version int64  `json:"version"`
	}
	if err := json.Unmarshal(body, &opened); status != 201 || err != nil || opened.QuoteID == "" || opened.Version < 1 {
		t.Fatalf("open a change quote: %d %s (want 201 {quote_id, version})", status, body)
	}
	if loc := hdr.Get("Location"); loc != "/v1/change-quotes/"+opened.QuoteID {
		t.Errorf("open a change quote: Location %q", loc)
	}
	if status, _, body := api.do("GET", "/v1/change-quotes/"+opened.QuoteID+"/preview", alexKey, ""); status != 200 || !strings.Contains(string(body), "Contoso Ltd") {
		t.Errorf("preview of the new quote: %d %s", status, body)
	}

	status, _, body = api.do("GET", "/metrics", "", "")
	if status != 200 {
		t.Fatalf("GET /metrics: %d %.300s", status, body)
	}
	metrics := string(body)
	for _, re := range []string{
		`(?m)^upsell_http_requests_total\{[^}]*route="/healthz"[^}]*\} 1$`,
		`(?m)^upsell_http_requests_total\{[^}]*route="/v1/customers/\{customer_id\}/change-quotes"[^}]*status="201"[^}]*\} 1$`,
		`(?m)^upsell_http_requests_total\{[^}]*route="unmatched"[^}]*status="404"[^}]*\} 1$`,
		`(?m)^upsell_projection_lag_events\{projection="customers"\} \d+$`,
		`(?m)^upsell_events_appended_total\{[^}]*\} [1-9]\d*$`,
		`(?m)^upsell_group_commit_commands_count [1-9]\d*$`,
		`(?m)^upsell_group_commit_refused_total 0$`,
	} {
		if !regexp.MustCompile(re).MatchString(metrics) {
			t.Errorf("GET /metrics has no line matching %s", re)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(metrics, "upsell_"))
	}

	// Graceful shutdown.
	srv.cancel()
	select {
	case code := <-srv.exit:
		srv.exit <- code // for the cleanup
		if code != 0 {
			t.Errorf("serve returned %d after its context ended (want 0); stderr:\n%s", code, srv.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not return within 15 s of its context ending; log:\n%s", srv.stderr.String())
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(srv.base, "http://"), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after serve returned", srv.base)
	}

	log := srv.stderr.String()
	for _, want := range []string{"shutting down", "msg=stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	if i, j := strings.Index(log, "shutting down"), strings.LastIndex(log, "msg=stopped"); i >= 0 && j >= 0 && j < i {
		t.Errorf("the log says stopped before shutting down:\n%s", log)
	}
	for _, secret := range []string{alexKey, "not-a-key-4d7e"} {
		if strings.Contains(log, secret) {
			t.Errorf("the log contains the API key %q:\n%s", secret, log)
		}
	}

	// One log line per request, matched by request id.
	var requestLines []string
	for line := range strings.SplitSeq(log, "\n") {
		if strings.Contains(line, " msg=request ") {
			requestLines = append(requestLines, line)
		}
	}
	if len(requestLines) != len(api.requestIDs) {
		t.Errorf("%d requests, %d msg=request log lines (want one each):\n%s", len(api.requestIDs), len(requestLines), strings.Join(requestLines, "\n"))
	}
	for _, id := range api.requestIDs {
		var n int
		for _, line := range requestLines {
			if strings.Contains(line, "request_id="+id) {
				n++
				for _, field := range []string{"status=", "duration_ms=", "route=", "method="} {
					if !strings.Contains(line, " "+field) {
						t.Errorf("request log line lacks %s: %s", field, line)
					}
				}
			}
		}
		if n != 1 {
			t.Errorf("request %s: %d log lines (want 1)", id, n)
		}
	}
}

// grepLines keeps the lines of s that start with prefix.
func grepLines(s, prefix string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func TestServeRefusesAnUnmigratedDatabase(t *testing.T) {
	t.Parallel()
	url := testdb.Empty(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	code := run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, envWith(url), &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "run `upsell migrate`") {
		t.Fatalf("serve on an unmigrated database: code %d (want 1), stderr %q (want it to say to run `upsell migrate`)", code, errOut.String())
	}
	if strings.Contains(out.String(), "serving") {
		t.Errorf("serve on an unmigrated database said it serves: %q", out.String())
	}
}

// migratedURL is the URL of the package's shared, migrated database (serve
// tests that fail before listening change nothing in it).
func migratedURL(t *testing.T) string {
	t.Helper()
	testdb.Pool(t, "cmd_upsell")
	url, err := testdb.URL("cmd_upsell")
	if err != nil {
		t.Fatal(err)
	}
	return url
}

func TestServeRefusals(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	url := migratedURL(t)
	tests := []struct {
		name     string
		url      string
		args     []string
		code     int
		inStderr []string
	}{
		{"an address without a port", url, []string{"serve", "--addr", "nonsense"}, 1, []string{"upsell serve:", `nonsense`, "missing port"}},
		{"a port out of range", url, []string{"serve", "--addr", "127.0.0.1:99999"}, 1, []string{"upsell serve:", "99999", "invalid port"}},
		{"an address in use", url, []string{"serve", "--addr", busy.Addr().String()}, 1, []string{"upsell serve:", busy.Addr().String(), "address already in use"}},
		{"an argument", "x", []string{"serve", "extra"}, 2, []string{"upsell serve: serve takes no arguments"}},
		{"an argument after --addr", "x", []string{"serve", "--addr", "127.0.0.1:0", "extra"}, 2, []string{"serve takes no arguments"}},
		{"help", "x", []string{"serve", "-h"}, 0, []string{"-addr"}},
		{"a negative quote cache", "x", []string{"serve", "--quote-cache", "-1"}, 2, []string{"--quote-cache -1: must be 0 (none) or more"}},
		{"a negative group commit", "x", []string{"serve", "--group-commit", "-1"}, 2, []string{"--group-commit -1: must be 0 (off) or more"}},
		{"an empty group", "x", []string{"serve", "--group-size", "0"}, 2, []string{"--group-size 0: must be 1 or more"}},
		{"a negative rate limit", "x", []string{"serve", "--rate-limit", "-1"}, 2, []string{"--rate-limit -1: must be 0 (no limit) or more"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var out, errOut syncBuffer
			code := run(ctx, tt.args, envWith(tt.url), &out, &errOut)
			if code != tt.code {
				t.Errorf("code %d, want %d; stderr %q", code, tt.code, errOut.String())
			}
			for _, want := range tt.inStderr {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("stderr %q lacks %q", errOut.String(), want)
				}
			}
			if strings.Contains(out.String(), "serving the API") {
				t.Errorf("it said it serves: %q", out.String())
			}
		})
	}
}

// A flag the command does not know is a misused command line: exit code 2,
// as run documents ("0 done, 1 failed, 2 misused") and as an unknown
// argument already is.
func TestUnknownFlagIsMisuse(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"serve", "--bogus"},
		{"serve", "--addr"}, // the flag's value is missing
		{"rebuild", "--bogus"},
		{"migrate", "--bogus"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			code, _, errOut := upsell(t, "x", args...)
			if code != 2 {
				t.Errorf("upsell %s: code %d, want 2 (misused); stderr %q", strings.Join(args, " "), code, errOut)
			}
		})
	}
}
