package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// billingLine is a line of `billing-tail --json`.
type billingLine struct {
	EventID           string `json:"event_id"`
	QuoteID           string `json:"quote_id"`
	CustomerID        string `json:"customer_id"`
	SubmittedAt       string `json:"submitted_at"`
	SubmittedBy       string `json:"submitted_by"`
	PriorMonthlyTotal string `json:"prior_monthly_total"`
	NewMonthlyTotal   string `json:"new_monthly_total"`
	MonthlyDifference string `json:"monthly_difference"`
	Lines             []struct {
		ProductCode     string `json:"product_code"`
		Product         string `json:"product"`
		TermType        string `json:"term_type"`
		PriorQuantity   int    `json:"prior_quantity"`
		CurrentQuantity int    `json:"current_quantity"`
		QuantityChange  int    `json:"quantity_change"`
		MonthlyChange   string `json:"monthly_change"`
	} `json:"lines"`
}

// waitOrders waits until the command has printed n JSON lines and returns
// them decoded.
func waitOrders(t *testing.T, b *background, n int) []billingLine {
	t.Helper()
	deadline := time.Now().Add(relayWait)
	for {
		out := b.stdout.String()
		if lines := strings.SplitAfter(out, "\n"); strings.Count(out, "\n") >= n {
			var got []billingLine
			for _, l := range lines[:len(lines)-1] {
				var o billingLine
				if err := json.Unmarshal([]byte(l), &o); err != nil {
					t.Fatalf("billing-tail printed a line that is not an order: %v: %q", err, l)
				}
				got = append(got, o)
			}
			return got
		}
		select {
		case code := <-b.exit:
			b.code = &code
			t.Fatalf("billing-tail exited %d; stdout %q, stderr:\n%s", code, out, b.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("billing-tail printed %d orders after %s, want %d; stdout %q, stderr:\n%s", strings.Count(out, "\n"), relayWait, n, out, b.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOutput waits until out contains want.
func waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(relayWait)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q after %s in:\n%s", want, relayWait, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// submittedOrders is the OrderSubmitted events of the log, oldest first,
// with their data as stored.
type storedOrder struct {
	EventID, QuoteID string
	SchemaVersion    int
	Data             struct {
		CustomerID        string `json:"customer_id"`
		PriorMonthlyTotal string `json:"prior_monthly_total"`
		NewMonthlyTotal   string `json:"new_monthly_total"`
		MonthlyDifference string `json:"monthly_difference"`
		SubmittedBy       string `json:"submitted_by"`
		SubmittedAt       time.Time
		Lines             []struct {
			ProductCode     string `json:"product_code"`
			PriorQuantity   int    `json:"prior_quantity"`
			CurrentQuantity int    `json:"current_quantity"`
			QuantityChange  int    `json:"quantity_change"`
			MonthlyChange   string `json:"monthly_change"`
		} `json:"lines"`
	}
}

func submittedOrders(t *testing.T, pool *pgxpool.Pool) []storedOrder {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event_id::text, stream_id, schema_version, data::text FROM events
WHERE event_type = 'OrderSubmitted' ORDER BY transaction_id, position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storedOrder
	for rows.Next() {
		var o storedOrder
		var data string
		if err := rows.Scan(&o.EventID, &o.QuoteID, &o.SchemaVersion, &data); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(data), &o.Data); err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameOrder checks a printed order against the OrderSubmitted event.
func sameOrder(t *testing.T, got billingLine, want storedOrder) {
	t.Helper()
	if want.SchemaVersion != 2 {
		t.Fatalf("the demo's OrderSubmitted is at schema version %d", want.SchemaVersion)
	}
	if got.EventID != want.EventID || got.QuoteID != want.QuoteID || got.CustomerID != "cust-contoso" || got.CustomerID != want.Data.CustomerID ||
		got.SubmittedBy != want.Data.SubmittedBy || got.PriorMonthlyTotal != want.Data.PriorMonthlyTotal ||
		got.NewMonthlyTotal != want.Data.NewMonthlyTotal || got.MonthlyDifference != want.Data.MonthlyDifference {
		t.Errorf("printed order %+v\nthe event %s of quote %s: %+v", got, want.EventID, want.QuoteID, want.Data)
	}
	if len(got.Lines) != len(want.Data.Lines) || len(got.Lines) == 0 {
		t.Fatalf("printed %d lines, the event has %d", len(got.Lines), len(want.Data.Lines))
	}
	for i, l := range got.Lines {
		w := want.Data.Lines[i]
		if l.ProductCode != w.ProductCode || l.PriorQuantity != w.PriorQuantity || l.CurrentQuantity != w.CurrentQuantity ||
			l.QuantityChange != w.QuantityChange || l.MonthlyChange != w.MonthlyChange || l.QuantityChange != l.CurrentQuantity-l.PriorQuantity {
			t.Errorf("line %d: printed %+v, the event has %+v", i, l, w)
		}
	}
}

// The demo's order reaches billing through the relay and the SQL topic:
// billing-tail --from-start prints it with the per-line changes of the
// OrderSubmitted event; run again it resumes where its group stopped, and
// a new group starts at the end; both then print only the next order.
func TestBillingTailAfterTheDemo(t *testing.T) {
	t.Parallel()
	url, pool := storyDB(t)
	getenv := envOf(url)
	r := startCommand(t, getenv, "relay")
	waitRelayed(t, pool, postgresTransport(t), r.stderr)

	first := startCommand(t, getenv, "billing-tail", "--from-start", "--json")
	got := waitOrders(t, first, 1)
	orders := submittedOrders(t, pool)
	if len(orders) != 1 {
		t.Fatalf("%d OrderSubmitted events after the demo", len(orders))
	}
	sameOrder(t, got[0], orders[0])
	// The demo's numbers: EMAIL-SEC 682 -> 700 at 3.20 (was 3.25), one
	// product added with 700 seats, ARCHIVE unchanged.
	byCode := map[string]string{}
	for _, l := range got[0].Lines {
		byCode[l.ProductCode] = l.MonthlyChange
		if l.ProductCode == "EMAIL-SEC" && (l.QuantityChange != 18 || l.MonthlyChange != "23.50") {
			t.Errorf("EMAIL-SEC: %+v, want +18 seats and +23.50 a month", l)
		}
		if l.ProductCode == "ARCHIVE" && (l.QuantityChange != 0 || l.MonthlyChange != "0.00") {
			t.Errorf("ARCHIVE: %+v, want no change", l)
		}
	}
	if _, ok := byCode["EMAIL-SEC"]; !ok || len(got[0].Lines) != 3 || got[0].PriorMonthlyTotal != "3341.80" {
		t.Errorf("the demo's order: %+v", got[0])
	}
	if code := first.stop(); code != 0 {
		t.Errorf("billing-tail exited %d after its context ended; stderr:\n%s", code, first.stderr.String())
	}
	if out := first.stdout.String(); strings.Count(out, "\n") != 1 {
		t.Errorf("billing-tail --from-start printed %d lines, want the one order:\n%s", strings.Count(out, "\n"), out)
	}
	if log := first.stderr.String(); !strings.Contains(log, "upsell: following submitted orders on postgres topic upsell_events from the first message") {
		t.Errorf("billing-tail's stderr: %s", log)
	}

	// The same group resumes; a new group starts at the end. Neither
	// prints the first order; both print the second.
	resumed := startCommand(t, getenv, "billing-tail", "--json")
	fresh := startCommand(t, getenv, "billing-tail", "--json", "--group", "accounts")
	text := startCommand(t, getenv, "billing-tail", "--from-start", "--group", "text")
	for _, b := range []*background{resumed, fresh, text} {
		waitOutput(t, b.stderr, "upsell: following submitted orders on postgres topic upsell_events from ")
	}
	if code, out, errOut := upsell(t, url, "demo"); code != 0 || !strings.Contains(out, "raises it to 718") {
		t.Fatalf("second demo: %d\n%s\n%s", code, out, errOut)
	}
	orders = submittedOrders(t, pool)
	if len(orders) != 2 {
		t.Fatalf("%d OrderSubmitted events after two demos", len(orders))
	}
	for name, b := range map[string]*background{"the resumed group": resumed, "a new group": fresh} {
		got := waitOrders(t, b, 1)
		if got[0].EventID == orders[0].EventID {
			t.Errorf("%s printed the first order again", name)
			continue
		}
		sameOrder(t, got[0], orders[1])
		for _, l := range got[0].Lines {
			if l.ProductCode == "EMAIL-SEC" && (l.PriorQuantity != 700 || l.CurrentQuantity != 718 || l.QuantityChange != 18) {
				t.Errorf("%s: EMAIL-SEC %+v, want 700 -> 718", name, l)
			}
		}
	}
	if !strings.Contains(resumed.stderr.String(), "from where group billing-tail stopped") {
		t.Errorf("billing-tail's stderr: %s", resumed.stderr.String())
	}

	// Text: both orders, as billing reads them.
	deadline := time.Now().Add(relayWait)
	for strings.Count(text.stdout.String(), "order ") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("billing-tail --from-start (text) printed:\n%s", text.stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := text.stdout.String()
	for _, want := range []string{
		"order " + orders[0].QuoteID + "  customer cust-contoso  submitted ",
		"(event " + orders[0].EventID + ")",
		"order " + orders[1].QuoteID + "  customer cust-contoso  submitted ",
		"  Email Security Cloud Gateway (EMAIL-SEC)  12 Month  682 → 700  +18 ",
		"  monthly total 3341.80 → ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("billing-tail (text) lacks %q:\n%s", want, out)
		}
	}
	for _, b := range []*background{resumed, fresh, text, r} {
		if code := b.stop(); code != 0 {
			t.Errorf("%v exited %d; stderr:\n%s", b.args, code, b.stderr.String())
		}
	}
	if n := strings.Count(resumed.stdout.String(), "\n"); n != 1 {
		t.Errorf("the resumed group printed %d orders, want 1:\n%s", n, resumed.stdout.String())
	}
	if n := strings.Count(fresh.stdout.String(), "\n"); n != 1 {
		t.Errorf("the new group printed %d orders, want 1:\n%s", n, fresh.stdout.String())
	}
}

func TestBillingTailRefusals(t *testing.T) {
	t.Parallel()
	url := migratedURL(t)
	for _, tc := range []struct {
		args  []string
		inErr string
	}{
		{[]string{"billing-tail", "--group", ""}, "--group must not be empty"},
		{[]string{"billing-tail", "extra"}, "billing-tail takes no arguments"},
		{[]string{"billing-tail", "--bogus"}, "flag provided but not defined: -bogus"},
	} {
		code, out, errOut := upsell(t, url, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.inErr) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errOut, tc.inErr)
		}
	}
}
