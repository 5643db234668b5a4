package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/loadgen"
)

// loadgenRun runs `upsell loadgen ARGS --json` against a served database
// and returns its report.
func loadgenRun(t *testing.T, url string, args ...string) *loadgen.Report {
	t.Helper()
	code, out, errOut := upsell(t, url, append([]string{"loadgen", "--json", "--progress", "0"}, args...)...)
	if code != 0 {
		t.Fatalf("loadgen %s: code %d\nstdout %s\nstderr %s", strings.Join(args, " "), code, out, errOut)
	}
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("loadgen --json printed no JSON object (%v):\n%s", err, out)
	}
	return &rep
}

// eventCounts counts the database's events by type.
func eventCounts(t *testing.T, url string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT event_type, count(*) FROM events GROUP BY event_type`)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	var typ string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&typ, &n}, func() error { counts[typ] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return counts
}

func diff(after, before map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func wantOrderedLatency(t *testing.T, what string, l loadgen.Latency) {
	t.Helper()
	if !(0 < l.P50 && l.P50 <= l.P95 && l.P95 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("%s: latency percentiles not 0 < p50 <= p95 <= p99 <= max: %+v", what, l)
	}
}

func wantSameCounts(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("%s: %d %s events appended, the report says %d", what, got[k], k, want[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %d %s events appended, none expected", what, got[k], k)
		}
	}
}

// loadgen against a real `upsell serve`: what it reports is what the
// server appended, kind by kind.
func TestLoadgenAgainstServe(t *testing.T) {
	t.Parallel()
	url := testdb.Empty(t)
	if code, out, errOut := upsell(t, url, "migrate"); code != 0 {
		t.Fatalf("migrate: code %d, %q %q", code, out, errOut)
	}
	srv := startServe(t, url)

	// The mix: every kind of request, no errors, and one event per command
	// (two per submit) in the database.
	rep := loadgenRun(t, url, "--target", srv.base, "--users", "3", "--customers", "9", "--requests", "500", "--seed", "7")
	if rep.Total.Requests != 500 || rep.Total.OK != 500 || rep.Total.Errors != 0 || rep.Total.Refused != 0 {
		t.Errorf("mix: total %+v (want 500 requests, all ok)", rep.Total)
	}
	if rep.Mode != loadgen.ModeMix || rep.Users != 3 || rep.Customers != 9 || rep.MSPID != "lg-7" || rep.Target != srv.base || rep.Interrupted {
		t.Errorf("mix: report header %+v", rep)
	}
	if len(rep.Answers) != 0 {
		t.Errorf("mix: answers other than 2xx: %+v", rep.Answers)
	}
	for _, k := range loadgen.Kinds() {
		kr := rep.Kinds[k.String()]
		if kr.OK == 0 {
			t.Errorf("mix: no %s request: %+v", k, kr)
			continue
		}
		wantOrderedLatency(t, "mix "+k.String(), kr.Latency)
		if kr.Throughput <= 0 {
			t.Errorf("mix: %s throughput %v", k, kr.Throughput)
		}
	}
	wantOrderedLatency(t, "mix total", rep.Total.Latency)
	ok := func(k string) int { return rep.Kinds[k].OK }
	wantSameCounts(t, "mix", eventCounts(t, url), map[string]int{
		"CustomerOnboarded":     9,
		"ChangeQuoteOpened":     ok("open"),
		"SeatsChanged":          ok("seats"),
		"ProductAdded":          ok("add_product"),
		"QuoteSaved":            ok("save"),
		"OrderReviewed":         ok("review"),
		"AcknowledgementsGiven": ok("acknowledge"),
		"OrderSubmitted":        ok("submit"),
		"SubscriptionAmended":   ok("submit"),
	})
	if rep.Quotes.Opened != ok("open") || rep.Quotes.Submitted != ok("submit") || rep.Quotes.SavedLeft == 0 {
		t.Errorf("mix: quotes %+v", rep.Quotes)
	}

	// Commands only, on the same data with another number of users: one
	// event per request, and nothing imported again.
	before := eventCounts(t, url)
	rep = loadgenRun(t, url, "--target", srv.base, "--users", "2", "--customers", "9", "--requests", "300", "--seed", "7", "--commands-only")
	if rep.Total.Requests != 300 || rep.Total.OK != 300 || rep.Total.Errors != 0 || rep.Mode != loadgen.ModeCommandsOnly {
		t.Errorf("commands only: %s, total %+v (want 300 requests, all ok)", rep.Mode, rep.Total)
	}
	for k, kr := range rep.Kinds {
		if (k == "open" || k == "seats") != (kr.Requests > 0) {
			t.Errorf("commands only: %d %s requests (want only open and seats)", kr.Requests, k)
		}
	}
	wantOrderedLatency(t, "commands only seats", rep.Kinds["seats"].Latency)
	after := eventCounts(t, url)
	wantSameCounts(t, "commands only", diff(after, before), map[string]int{
		"ChangeQuoteOpened": rep.Kinds["open"].OK,
		"SeatsChanged":      rep.Kinds["seats"].OK,
	})
	total := 0
	for _, n := range diff(after, before) {
		total += n
	}
	if total != 300 {
		t.Errorf("commands only: %d events appended by 300 requests (want one each)", total)
	}

	// A duration and a rate cap.
	rep = loadgenRun(t, url, "--target", srv.base, "--users", "2", "--customers", "9", "--seed", "7", "--duration", "1s", "--rate", "40")
	if rep.Total.Requests == 0 || rep.Total.Errors != 0 {
		t.Errorf("1 s at 40/s: total %+v", rep.Total)
	}
	if limit := 40*rep.Elapsed + 2; float64(rep.Total.Requests) > limit {
		t.Errorf("1 s at 40/s: %d requests in %.2f s (want at most %.0f)", rep.Total.Requests, rep.Elapsed, limit)
	}
	if rep.Elapsed < 1 || rep.Elapsed > 10 || rep.RateLimit != 40 {
		t.Errorf("1 s at 40/s: elapsed %.2f s, rate limit %v", rep.Elapsed, rep.RateLimit)
	}

	// The text report.
	code, out, errOut := upsell(t, url, "loadgen", "--target", srv.base, "--users", "2", "--customers", "9", "--seed", "7", "--requests", "40")
	if code != 0 {
		t.Fatalf("text report: code %d, %s", code, errOut)
	}
	for _, want := range []string{"upsell loadgen: mix, 2 users on 9 customers of MSP lg-7", "KIND", "REQUESTS", "PER SEC", "P50 MS", "P95 MS", "P99 MS", "MAX MS", "customer", "open", "all", "no errors"} {
		if !strings.Contains(out, want) {
			t.Errorf("the text report lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "loadgen: imported MSP lg-7") {
		t.Errorf("stderr does not say what was imported: %s", errOut)
	}
}

// Usage errors exit with 2, failures with 1, and both say what is wrong.
func TestLoadgenRefusals(t *testing.T) {
	t.Parallel()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := "http://" + closed.Addr().String()
	closed.Close()
	tests := []struct {
		name     string
		url      string
		args     []string
		code     int
		inStderr []string
	}{
		{"an argument", "x", []string{"extra"}, 2, []string{"loadgen takes no arguments"}},
		{"an unknown flag", "x", []string{"--bogus"}, 2, []string{"bogus"}},
		{"no users", "x", []string{"--users", "0"}, 2, []string{"--users must be between 1 and"}},
		{"fewer customers than users", "x", []string{"--users", "5", "--customers", "4"}, 2, []string{"--customers must be between --users (5)"}},
		{"a negative duration", "x", []string{"--duration", "-1s"}, 2, []string{"--duration must be positive"}},
		{"a submit ratio above 1", "x", []string{"--submit-ratio", "1.5"}, 2, []string{"--submit-ratio must be between 0 and 1"}},
		{"a target that is no URL", "x", []string{"--target", "127.0.0.1:8080"}, 2, []string{"--target must be an http:// or https:// URL"}},
		{"no DATABASE_URL", "", []string{"--target", nobody}, 1, []string{"DATABASE_URL is not set"}},
		{"a target that does not answer", "x", []string{"--target", nobody}, 1, []string{"upsell loadgen: the server at " + nobody + " does not answer", "connection refused"}},
		{"help", "x", []string{"-h"}, 0, []string{"Usage: upsell loadgen", "-commands-only", "-rate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := upsell(t, tt.url, append([]string{"loadgen"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("code %d, want %d; stdout %q, stderr %q", code, tt.code, out, errOut)
			}
			for _, want := range tt.inStderr {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr %q lacks %q", errOut, want)
				}
			}
		})
	}
}

// --generate writes the import file and needs neither a database nor a
// server; `upsell import` reads it.
func TestLoadgenGenerate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "lg.json")
	code, out, errOut := upsell(t, "", "loadgen", "--generate", path, "--customers", "40", "--users", "4", "--seed", "3")
	if code != 0 || !strings.Contains(out, "wrote "+path) {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out, errOut)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file, err := importer.Parse(f)
	if err != nil {
		t.Fatalf("importer.Parse: %v", err)
	}
	if len(file.MSPs) != 1 || file.MSPs[0].ID != "lg-3" || len(file.MSPs[0].Users) != 4 || len(file.Customers) != 40 || len(file.Products) == 0 {
		t.Errorf("the file has %d MSPs, %d customers, %d products", len(file.MSPs), len(file.Customers), len(file.Products))
	}
}
