package loadgen

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func ms(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond // 1..100 ms
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value is every percentile", ms(7), 50, 7 * time.Millisecond},
		{"one value, max", ms(7), 100, 7 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p95 of 1..100", hundred, 95, 95 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"max of 1..100", hundred, 100, 100 * time.Millisecond},
		{"p50 of four: the second (nearest rank)", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p51 of four: the third", ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{"p99 of ten: the tenth", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"a tiny p is the minimum", ms(3, 4, 5), 0.001, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := Percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: Percentile(p%g) = %s, want %s", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestLatencyOfSortsAndOrders(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	durs := make([]time.Duration, 10_000)
	for i := range durs {
		durs[i] = time.Duration(rng.ExpFloat64() * float64(time.Millisecond))
	}
	want := slices.Max(durs)
	l := LatencyOf(durs)
	if !slices.IsSorted(durs) {
		t.Error("LatencyOf did not sort its slice")
	}
	if !(0 < l.P50 && l.P50 <= l.P95 && l.P95 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("percentiles out of order: %+v", l)
	}
	if got := time.Duration(l.Max * 1e6); (got - want).Abs() > time.Microsecond {
		t.Errorf("max %v ms, want %s", l.Max, want)
	}
	// The median of Exp(1) is ln 2.
	if l.P50 < 0.65 || l.P50 > 0.74 {
		t.Errorf("p50 of Exp(1 ms) = %v ms, want about 0.69", l.P50)
	}
	if got := LatencyOf([]time.Duration{1500 * time.Microsecond}); got != (Latency{1.5, 1.5, 1.5, 1.5}) {
		t.Errorf("one request of 1.5 ms: %+v", got)
	}
}

func TestReportMergesRecorders(t *testing.T) {
	t.Parallel()
	a, b := newRecorder(), newRecorder()
	a.record(KindOpen, 2*time.Millisecond, 201, "", OK, "")
	b.record(KindOpen, 4*time.Millisecond, 201, "", OK, "")
	a.record(KindSubmit, 8*time.Millisecond, 409, "baseline_changed", Refused, "")
	b.record(KindSubmit, 6*time.Millisecond, 500, "internal", Failed, "POST /x: 500")
	b.record(KindSeats, 30*time.Second, 0, "connection_refused", Failed, "PUT /y: refused")
	a.opened, b.opened, b.submitted, a.savedLeft = 1, 1, 1, 1

	rep := &Report{Mode: ModeMix}
	rep.build([]*recorder{a, b}, 2*time.Second, ExpectedRefusal)
	if rep.Total.Requests != 5 || rep.Total.OK != 2 || rep.Total.Refused != 1 || rep.Total.Errors != 2 {
		t.Errorf("total %+v (want 5 requests: 2 ok, 1 refused, 2 errors)", rep.Total)
	}
	if open := rep.Kinds["open"]; open.Requests != 2 || open.Throughput != 1 || open.Latency.P50 != 2 || open.Latency.Max != 4 {
		t.Errorf("open: %+v (want 2 requests, 1/s, p50 2 ms, max 4 ms)", open)
	}
	// A request without an answer has no latency.
	if seats := rep.Kinds["seats"]; seats.Errors != 1 || seats.Latency.Max != 0 {
		t.Errorf("seats: %+v (want 1 error, no latency)", seats)
	}
	if rep.Total.Latency.Max != 8 {
		t.Errorf("total max %v ms, want 8", rep.Total.Latency.Max)
	}
	want := []Answer{
		{Kind: "seats", Status: 0, Code: "connection_refused", Count: 1},
		{Kind: "submit", Status: 409, Code: "baseline_changed", Count: 1, Expected: true},
		{Kind: "submit", Status: 500, Code: "internal", Count: 1},
	}
	if !slices.Equal(rep.Answers, want) {
		t.Errorf("answers %+v\nwant %+v", rep.Answers, want)
	}
	if rep.Quotes != (Quotes{Opened: 2, Submitted: 1, SavedLeft: 1}) {
		t.Errorf("quotes %+v", rep.Quotes)
	}
	if !strings.Contains(rep.FirstError, "submit: POST /x: 500") {
		t.Errorf("first error %q", rep.FirstError)
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"P50 MS", "P99 MS", "MAX MS", "open", "all", "baseline_changed", "expected", "connection_refused", "2 errors; the first: submit: POST /x: 500"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the text report lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Total != rep.Total || len(back.Kinds) != int(numKinds) {
		t.Errorf("the JSON report does not read back (%v): %s", err, js.String())
	}
}

func TestExpectedRefusal(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		status int
		code   string
		want   bool
	}{
		{409, "baseline_changed", true}, {409, "version_conflict", true}, {412, "precondition_failed", true},
		{422, "seats_decrease", true}, {409, "nothing_to_review", false}, {422, "acknowledgements_missing", false},
		{404, "not_found", false}, {500, "internal", false}, {401, "unauthorized", false},
	} {
		if got := ExpectedRefusal(tt.status, tt.code); got != tt.want {
			t.Errorf("ExpectedRefusal(%d, %s) = %v", tt.status, tt.code, got)
		}
	}
}

// The pacer admits at most rate requests a second over all users, and
// the request budget is exact.
func TestTakePacesAndCounts(t *testing.T) {
	t.Parallel()
	r := &runner{cfg: Config{Requests: 30}, stop: make(chan struct{}), interval: 10 * time.Millisecond}
	r.budget.Store(30)
	start := time.Now()
	var admitted int
	for r.take() {
		admitted++
	}
	if admitted != 30 {
		t.Errorf("admitted %d of a budget of 30", admitted)
	}
	// 30 slots 10 ms apart, the first at once.
	if el := time.Since(start); el < 290*time.Millisecond {
		t.Errorf("30 requests at 100/s took %s (want at least 290 ms)", el)
	}
	select {
	case <-r.stop:
	default:
		t.Error("the exhausted budget did not stop the run")
	}
}
