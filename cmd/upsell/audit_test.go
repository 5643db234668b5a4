package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/audit"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// storyEvent is one event of the seed story's quote as the database has it.
type storyEvent struct {
	id         string
	recordedAt time.Time
	hash       []byte
}

// auditStory runs the seed story (`upsell demo`: open a quote for Contoso
// Ltd, raise EMAIL-SEC from 682 to 700 seats, add a product, save, review,
// acknowledge, submit) on a database of its own, and returns its URL, a
// pool on it, the quote's id and its events by version (index 0 unused).
func auditStory(t *testing.T) (string, *pgxpool.Pool, string, []storyEvent) {
	t.Helper()
	url := testdb.Empty(t)
	var demoOut string
	for _, args := range [][]string{{"migrate"}, {"import", "../../fixtures/import-example.json"}, {"demo"}} {
		code, out, errOut := upsell(t, url, args...)
		if code != 0 {
			t.Fatalf("%v: code %d\n%s\n%s", args, code, out, errOut)
		}
		demoOut = out
	}
	m := regexp.MustCompile(`(?m)^Quote ([0-9a-f-]{36})$`).FindStringSubmatch(demoOut)
	if m == nil {
		t.Fatalf("no quote id in the demo's output:\n%s", demoOut)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // before testdb drops the database
	rows, err := pool.Query(context.Background(), `SELECT event_id::text, recorded_at, hash FROM events WHERE stream_id = $1 ORDER BY version`, m[1])
	if err != nil {
		t.Fatal(err)
	}
	events := []storyEvent{{}}
	for rows.Next() {
		var e storyEvent
		if err := rows.Scan(&e.id, &e.recordedAt, &e.hash); err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	if rows.Err() != nil || len(events) != 8 {
		t.Fatalf("the story's quote has %d events (%v), want 7", len(events)-1, rows.Err())
	}
	return url, pool, m[1], events
}

var historyRow = regexp.MustCompile(`^(\d+) +(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) +(\S+) +(\S+) +(.+)$`)

// historyRows returns the rows of the history table: version, time, actor,
// event type, change.
func historyRows(t *testing.T, out string) [][]string {
	t.Helper()
	var rows [][]string
	for _, line := range strings.Split(out, "\n") {
		if m := historyRow.FindStringSubmatch(line); m != nil {
			rows = append(rows, m[1:])
		}
	}
	return rows
}

func TestAuditHistory(t *testing.T) {
	t.Parallel()
	url, pool, quote, events := auditStory(t)

	code, out, errOut := upsell(t, url, "audit", quote)
	if code != 0 {
		t.Fatalf("audit: code %d\n%s", code, errOut)
	}
	want := [][2]string{ // event type, change in words
		{"ChangeQuoteOpened", "Change quote opened for Contoso Ltd (customer cust-contoso at version 1) by Northwind Managed Services, user u-alex: 2 lines, monthly total 3,341.80 USD"},
		{"SeatsChanged", "Seats of Email Security Cloud Gateway (12 Month): 682 → 700 at 3.20 USD a seat"},
		{"ProductAdded", "Product added: Security Awareness Training (12 Month), 700 seats at 1.25 USD a seat"},
		{"QuoteSaved", "Quote saved"},
		{"OrderReviewed", "Order reviewed: monthly total 3,341.80 → 4,240.30 USD, 700 users"},
		{"AcknowledgementsGiven", "Acknowledgements given by user u-alex: the master service provider agreement governs the order; authorized to place it"},
		{"OrderSubmitted", "Order submitted by user u-alex: monthly total 3,341.80 → 4,240.30 USD (+898.50), 700 users; acknowledged by user u-alex"},
	}
	rows := historyRows(t, out)
	if len(rows) != len(want) {
		t.Fatalf("%d history rows, want %d:\n%s", len(rows), len(want), out)
	}
	for i, r := range rows {
		v := i + 1
		if r[0] != fmt.Sprint(v) || r[1] != events[v].recordedAt.UTC().Format(audit.TimeLayout) || r[2] != "msp-northwind/u-alex" ||
			r[3] != want[i][0] || r[4] != want[i][1] {
			t.Errorf("row %d: %q\nwant version %d at %s by msp-northwind/u-alex, %s: %s", v, r, v,
				events[v].recordedAt.UTC().Format(audit.TimeLayout), want[i][0], want[i][1])
		}
	}
	for _, s := range []string{
		"Change quote " + quote + ": Contoso Ltd (customer cust-contoso), MSP Northwind Managed Services; now at version 7",
		"Hash chain: intact, 7 events verified",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("audit output lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "State at") {
		t.Errorf("audit without --as-of shows a state:\n%s", out)
	}

	t.Run("as of a version", func(t *testing.T) {
		t.Parallel()
		code, out, errOut := upsell(t, url, "audit", quote, "--as-of", "2")
		if code != 0 {
			t.Fatalf("code %d\n%s", code, errOut)
		}
		if rows := historyRows(t, out); len(rows) != 2 || rows[1][3] != "SeatsChanged" {
			t.Errorf("history up to version 2: %q", rows)
		}
		for _, s := range []string{
			"As of version 2: version 2, recorded " + events[2].recordedAt.UTC().Format(audit.TimeLayout),
			"State at version 2: draft",
			"Monthly total: 3,341.80 → 3,365.30 USD (+23.50)",
		} {
			if !strings.Contains(out, s) {
				t.Errorf("output lacks %q:\n%s", s, out)
			}
		}
		line := regexp.MustCompile(`(?m)^Email Security Cloud Gateway +12 Month +682 +700 +3\.25 +3\.20 +2,240\.00$`)
		if !line.MatchString(out) || strings.Contains(out, "Security Awareness Training  ") {
			t.Errorf("the state's lines are not EMAIL-SEC 682 -> 700 without the added product:\n%s", out)
		}
	})
	t.Run("as of a time", func(t *testing.T) {
		t.Parallel()
		// The time version 5 was recorded, as the table prints it: up to and
		// with version 5, the review.
		at := events[5].recordedAt.UTC().Format(audit.TimeLayout)
		code, out, errOut := upsell(t, url, "audit", "--as-of", at, quote)
		if code != 0 {
			t.Fatalf("code %d\n%s", code, errOut)
		}
		if rows := historyRows(t, out); len(rows) != 5 || rows[4][3] != "OrderReviewed" {
			t.Errorf("history as of %s: %q", at, rows)
		}
		for _, s := range []string{
			"State at version 5: reviewed",
			"Monthly total: 3,341.80 → 4,240.30 USD (+898.50)",
		} {
			if !strings.Contains(out, s) {
				t.Errorf("output lacks %q:\n%s", s, out)
			}
		}
		if !regexp.MustCompile(`(?m)^Security Awareness Training +12 Month +0 +700 +0\.00 +1\.25 +875\.00$`).MatchString(out) {
			t.Errorf("the state lacks the added product:\n%s", out)
		}
		// A microsecond earlier, the review had not happened.
		code, out, _ = upsell(t, url, "audit", quote, "--as-of", events[5].recordedAt.Add(-time.Microsecond).Format(time.RFC3339Nano))
		if rows := historyRows(t, out); code != 0 || len(rows) != 4 || !strings.Contains(out, "State at version 4: saved") {
			t.Errorf("a microsecond before the review: code %d, %d rows\n%s", code, len(rows), out)
		}
	})
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		code, out, errOut := upsell(t, url, "audit", quote, "--json")
		if code != 0 {
			t.Fatalf("code %d\n%s", code, errOut)
		}
		var got struct {
			QuoteID string           `json:"quote_id"`
			Version int64            `json:"version"`
			Events  []map[string]any `json:"events"`
			State   *json.RawMessage `json:"state"`
			Chain   struct {
				Intact         bool  `json:"intact"`
				VerifiedEvents int64 `json:"verified_events"`
			} `json:"chain"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("--json output does not parse: %v\n%s", err, out)
		}
		if got.QuoteID != quote || got.Version != 7 || len(got.Events) != 7 || got.State != nil || !got.Chain.Intact || got.Chain.VerifiedEvents != 7 {
			t.Fatalf("--json: %s", out)
		}
		for i, e := range got.Events {
			v := i + 1
			// The fields of GET /v1/change-quotes/{id}/events, hash and change.
			for _, k := range []string{"event_id", "type", "schema_version", "version", "position", "recorded_at", "actor", "correlation_id", "causation_id", "data", "hash", "change"} {
				if _, ok := e[k]; !ok {
					t.Errorf("event %d has no %q: %v", v, k, e)
				}
			}
			if e["event_id"] != events[v].id || e["hash"] != hex.EncodeToString(events[v].hash) || e["type"] != want[i][0] || e["change"] != want[i][1] {
				t.Errorf("event %d: %v", v, e)
			}
			if a, _ := e["actor"].(map[string]any); a["msp_id"] != "msp-northwind" || a["user_id"] != "u-alex" {
				t.Errorf("event %d: actor %v", v, e["actor"])
			}
		}

		code, out, _ = upsell(t, url, "audit", quote, "--json", "--as-of", "5")
		var asOf struct {
			AsOf   map[string]any `json:"as_of"`
			Events []any          `json:"events"`
			State  struct {
				Version int64  `json:"version"`
				Status  string `json:"status"`
				Lines   []struct {
					ProductCode string `json:"product_code"`
					PriorSeats  int    `json:"prior_seats"`
					Seats       int    `json:"seats"`
					UnitPrice   string `json:"unit_price"`
				} `json:"lines"`
				Preview struct {
					NewMonthlyTotal string `json:"new_monthly_total"`
				} `json:"preview"`
				Summary *struct {
					TotalUsers int `json:"total_users"`
				} `json:"summary"`
			} `json:"state"`
		}
		if err := json.Unmarshal([]byte(out), &asOf); code != 0 || err != nil {
			t.Fatalf("--json --as-of 5: code %d, %v\n%s", code, err, out)
		}
		s := asOf.State
		if asOf.AsOf["version"] != 5.0 || len(asOf.Events) != 5 || s.Version != 5 || s.Status != "reviewed" || len(s.Lines) != 3 ||
			s.Lines[0].ProductCode != "EMAIL-SEC" || s.Lines[0].PriorSeats != 682 || s.Lines[0].Seats != 700 || s.Lines[0].UnitPrice != "3.20" ||
			s.Preview.NewMonthlyTotal != "4240.30" || s.Summary == nil || s.Summary.TotalUsers != 700 {
			t.Errorf("--json --as-of 5: %s", out)
		}
	})
	t.Run("verify", func(t *testing.T) {
		t.Parallel()
		code, out, errOut := upsell(t, url, "audit", "verify", quote)
		if code != 0 || out != "ok: 7 events in 1 streams verified\n" {
			t.Errorf("audit verify: code %d, %q %q", code, out, errOut)
		}
		var events, streams int64
		if err := pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT stream_id) FROM events`).Scan(&events, &streams); err != nil {
			t.Fatal(err)
		}
		code, out, errOut = upsell(t, url, "audit", "verify", "--all")
		if want := fmt.Sprintf("ok: %d events in %d streams verified\n", events, streams); code != 0 || out != want {
			t.Errorf("audit verify --all: code %d, %q (want %q) %q", code, out, want, errOut)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		t.Parallel()
		unknown := "6f1c2a9e-4b7d-4e21-9a3f-2c8d5e7b1a04"
		tests := []struct {
			args     []string
			code     int
			inStderr string
		}{
			{[]string{"audit", quote, "--as-of", "8"}, 1, "change quote " + quote + " has no version 8: it is at version 7"},
			{[]string{"audit", quote, "--as-of", "2001-01-01T00:00:00Z"}, 1, "did not exist at 2001-01-01T00:00:00Z: it was opened at " + events[1].recordedAt.UTC().Format(time.RFC3339Nano)},
			{[]string{"audit", unknown}, 1, "change quote " + unknown + " not found"},
			{[]string{"audit", "verify", unknown}, 1, "change quote " + unknown + " not found"},
			{[]string{"audit", "cust-contoso"}, 2, `"cust-contoso" is not a quote id (a UUID)`},
			{[]string{"audit", "verify", "nope"}, 2, `"nope" is not a quote id`},
			{[]string{"audit", quote, "--as-of", "0"}, 2, "a version counts from 1"},
			{[]string{"audit", quote, "--as-of", "yesterday"}, 2, "neither a version"},
			{[]string{"audit", quote, "--as-of", "2026-11-25 13:00"}, 2, "neither a version"},
			{[]string{"audit", quote, "--as-of"}, 2, "flag needs an argument"},
			{[]string{"audit"}, 2, "usage: upsell audit QUOTE_ID"},
			{[]string{"audit", quote, quote}, 2, "usage: upsell audit QUOTE_ID"},
			{[]string{"audit", "verify"}, 2, "usage: upsell audit verify"},
			{[]string{"audit", "verify", quote, "--all"}, 2, "usage: upsell audit verify"},
			{[]string{"audit", "--bogus", quote}, 2, "flag provided but not defined"},
			{[]string{"audit", "-h"}, 0, "usage: upsell audit QUOTE_ID"},
		}
		for _, tt := range tests {
			code, out, errOut := upsell(t, url, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.inStderr) {
				t.Errorf("%q: code %d (want %d), stderr %q (want it to contain %q)", tt.args, code, tt.code, errOut, tt.inStderr)
			}
			if code != 0 && out != "" {
				t.Errorf("%q failed but printed %q", tt.args, out)
			}
		}
	})
}

// TestAuditVerifyFindsTampering edits the events table with SQL, exactly
// as someone with access to the database would, and expects `audit verify`
// (of the quote, and --all) to fail naming the first bad event.
func TestAuditVerifyFindsTampering(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sql  string // $1 is the quote's id
		// The first bad event: its version after the tampering, and the
		// version it had before (whose event id is expected); 0 when the
		// tampering cannot be found (see docs/audit.md).
		version, was int64
		reason       eventstore.ChainReason
	}{
		{"a row's data updated", `UPDATE events SET data = jsonb_set(data, '{new_seats}', '650') WHERE stream_id = $1 AND version = 2`,
			2, 2, eventstore.ReasonHashMismatch},
		{"recorded_at updated", `UPDATE events SET recorded_at = recorded_at - interval '1 hour' WHERE stream_id = $1 AND version = 6`,
			6, 6, eventstore.ReasonHashMismatch},
		{"a middle event deleted", `DELETE FROM events WHERE stream_id = $1 AND version = 4`,
			5, 5, eventstore.ReasonVersionGap},
		{"two events' versions swapped", `UPDATE events SET version = CASE version WHEN 2 THEN 3 ELSE 2 END WHERE stream_id = $1 AND version IN (2, 3)`,
			2, 3, eventstore.ReasonNotChained},
		// (to a stream that --all reads after the quote's)
		{"an event moved to another stream", `UPDATE events SET stream_id = 'zz-elsewhere' WHERE stream_id = $1 AND version = 3`,
			4, 4, eventstore.ReasonVersionGap},
		{"the acknowledging user changed in the metadata", `UPDATE events SET metadata = jsonb_set(metadata, '{user_id}', '"u-sam"') WHERE stream_id = $1 AND version = 6`,
			6, 6, eventstore.ReasonHashMismatch},
		// A per-stream chain cannot see that its last event was deleted:
		// compare the newest hash with the one the relay published.
		{"the last event deleted", `DELETE FROM events WHERE stream_id = $1 AND version = 7`, 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, pool, quote, events := auditStory(t)
			tx, err := pool.Begin(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(context.Background()) }() // a no-op after Commit; else the pool cannot close
			// Whatever stands in the way of the edit goes first.
			if _, err := tx.Exec(context.Background(), `ALTER TABLE events DROP CONSTRAINT events_stream_version_key`); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(context.Background(), tt.sql, quote); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"audit", "verify", quote}, {"audit", "verify", "--all"}} {
				code, out, errOut := upsell(t, url, args...)
				if tt.version == 0 {
					if code != 0 || !strings.HasPrefix(out, "ok: ") {
						t.Errorf("%q: code %d, %q %q", args, code, out, errOut)
					}
					continue
				}
				want := fmt.Sprintf("upsell audit: hash chain broken in stream %s at version %d (event %s): %s: ",
					quote, tt.version, events[tt.was].id, tt.reason)
				if code != 1 || out != "" || !strings.HasPrefix(errOut, want) {
					t.Errorf("%q: code %d (want 1), stdout %q, stderr %q\nwant it to start with %q", args, code, out, errOut, want)
				}
			}
			// The history says so too.
			if tt.version != 0 {
				_, out, _ := upsell(t, url, "audit", quote)
				if !strings.Contains(out, fmt.Sprintf("Hash chain: BROKEN: hash chain broken in stream %s at version %d", quote, tt.version)) {
					t.Errorf("the history does not say the chain is broken:\n%s", out)
				}
			}
		})
	}
}

func TestVerifyProgress(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	clock := &fakeClock{t: time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)}
	p := &audit.Progress{W: &out, Every: 5 * time.Second, Now: clock.now}
	p.Start()
	for i := int64(1); i <= 30; i++ {
		clock.advance(time.Second)
		p.Report(eventstore.ChainStats{Events: i * 100_000, Streams: i * 1_000})
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d progress lines over 30 s, want one every 5 s:\n%s", len(lines), out.String())
	}
	if lines[0] != "verify: 500,000 events checked in 5,000 streams, 100,000 events/s" ||
		lines[5] != "verify: 3,000,000 events checked in 30,000 streams, 100,000 events/s" {
		t.Errorf("progress lines:\n%s", out.String())
	}
}
