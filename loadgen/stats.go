package loadgen

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Kind is a kind of request, as the report splits them.
type Kind int

// The request kinds, in the order of the flow.
const (
	KindCustomer    Kind = iota // GET /v1/customers/{id}
	KindOpen                    // POST /v1/customers/{id}/change-quotes
	KindSeats                   // PUT /v1/change-quotes/{id}/seats
	KindAddProduct              // POST /v1/change-quotes/{id}/products
	KindPreview                 // GET /v1/change-quotes/{id}/preview
	KindSave                    // POST …/save
	KindReview                  // POST …/review
	KindAcknowledge             // POST …/acknowledgements
	KindSubmit                  // POST …/submit
	numKinds
)

var kindNames = [numKinds]string{"customer", "open", "seats", "add_product", "preview", "save", "review", "acknowledge", "submit"}

func (k Kind) String() string { return kindNames[k] }

// Kinds lists every kind, in the order of the flow.
func Kinds() []Kind {
	out := make([]Kind, numKinds)
	for k := range out {
		out[k] = Kind(k)
	}
	return out
}

// Outcome is what became of one request.
type Outcome int

const (
	// OK is a 2xx answer the flow expected.
	OK Outcome = iota
	// Refused is an answer the flow can meet without anything being wrong
	// (409 baseline_changed when another run submitted first, 412, …): it
	// drops that quote and starts another.
	Refused
	// Failed is anything else: an unexpected status, an unreadable answer,
	// no answer at all.
	Failed
)

// answerKey groups the answers other than 2xx.
type answerKey struct {
	kind   Kind
	status int    // 0: no answer
	code   string // the problem's code, or what went wrong without an answer
}

// recorder collects one worker's measurements; merged when the run ends, so
// the workers share nothing while they run.
type recorder struct {
	kinds        [numKinds][]time.Duration
	counts       [numKinds][3]int // by Outcome
	answers      map[answerKey]int
	firstFailure string
	opened       int
	submitted    int
	savedLeft    int
}

func newRecorder() *recorder { return &recorder{answers: map[answerKey]int{}} }

// record adds one request. status 0 means there was no answer (d is not
// a latency then); code is the problem code or the failure's kind.
func (r *recorder) record(k Kind, d time.Duration, status int, code string, o Outcome, detail string) {
	r.counts[k][o]++
	if status != 0 {
		r.kinds[k] = append(r.kinds[k], d)
	}
	if status < 200 || status > 299 || o != OK {
		r.answers[answerKey{k, status, code}]++
	}
	if o == Failed && r.firstFailure == "" {
		r.firstFailure = fmt.Sprintf("%s: %s", k, detail)
	}
}

// Report is what a run measured. Its JSON is loadgen's --json output.
type Report struct {
	Target      string  `json:"target"`
	Mode        string  `json:"mode"` // "mix" or "commands-only"
	Seed        uint64  `json:"seed"`
	MSPID       string  `json:"msp_id"`
	Users       int     `json:"users"`
	Customers   int     `json:"customers"`
	RateLimit   float64 `json:"rate_limit_per_second,omitempty"`
	Elapsed     float64 `json:"elapsed_seconds"`
	Interrupted bool    `json:"interrupted"`
	// Abandoned counts requests cut off by an interruption, answered or
	// not: they are in no other figure.
	Abandoned int `json:"abandoned"`

	Total KindReport            `json:"total"`
	Kinds map[string]KindReport `json:"kinds"`
	// Answers lists the answers other than 2xx, and the requests without
	// an answer (status 0), by kind, status and code.
	Answers []Answer `json:"answers"`
	Quotes  Quotes   `json:"quotes"`
	// FirstError describes the first failed request, to start looking.
	FirstError string `json:"first_error,omitempty"`
}

// KindReport is the figures of one kind of request (or of all).
type KindReport struct {
	Requests   int     `json:"requests"`
	OK         int     `json:"ok"`
	Refused    int     `json:"refused"`
	Errors     int     `json:"errors"`
	Throughput float64 `json:"throughput_per_second"`
	Latency    Latency `json:"latency_ms"`
}

// Latency is in milliseconds, over the requests that were answered.
type Latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Answer is a count of one kind of answer other than 2xx.
type Answer struct {
	Kind     string `json:"kind"`
	Status   int    `json:"status"` // 0: no answer
	Code     string `json:"code"`
	Count    int    `json:"count"`
	Expected bool   `json:"expected"` // a refusal the flow copes with, not an error
}

// Quotes sums up what the virtual users did with their quotes.
type Quotes struct {
	Opened    int `json:"opened"`
	Submitted int `json:"submitted"`
	SavedLeft int `json:"saved_and_left"`
}

// Percentile is the nearest-rank percentile p (0 < p ≤ 100) of sorted, an
// ascending slice: the smallest value with at least p% of the values at or
// below it. Empty: 0.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// LatencyOf sorts durations in place and returns their percentiles.
func LatencyOf(durations []time.Duration) Latency {
	slices.Sort(durations)
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 } // µs precision
	return Latency{
		P50: ms(Percentile(durations, 50)), P95: ms(Percentile(durations, 95)),
		P99: ms(Percentile(durations, 99)), Max: ms(Percentile(durations, 100)),
	}
}

// build merges the workers' recorders into the report's figures.
func (rep *Report) build(recs []*recorder, elapsed time.Duration, expected func(status int, code string) bool) {
	rep.Elapsed = math.Round(elapsed.Seconds()*1000) / 1000
	rep.Kinds = map[string]KindReport{}
	perSecond := func(n int) float64 {
		if elapsed <= 0 {
			return 0
		}
		return math.Round(float64(n)/elapsed.Seconds()*10) / 10
	}
	var all []time.Duration
	answers := map[answerKey]int{}
	for k := range numKinds {
		var durs []time.Duration
		var kr KindReport
		for _, r := range recs {
			durs = append(durs, r.kinds[k]...)
			kr.OK += r.counts[k][OK]
			kr.Refused += r.counts[k][Refused]
			kr.Errors += r.counts[k][Failed]
		}
		kr.Requests = kr.OK + kr.Refused + kr.Errors
		kr.Throughput = perSecond(kr.Requests)
		kr.Latency = LatencyOf(durs)
		all = append(all, durs...)
		rep.Kinds[k.String()] = kr
		rep.Total.Requests += kr.Requests
		rep.Total.OK += kr.OK
		rep.Total.Refused += kr.Refused
		rep.Total.Errors += kr.Errors
	}
	rep.Total.Throughput = perSecond(rep.Total.Requests)
	rep.Total.Latency = LatencyOf(all)
	for _, r := range recs {
		for key, n := range r.answers {
			answers[key] += n
		}
		rep.Quotes.Opened += r.opened
		rep.Quotes.Submitted += r.submitted
		rep.Quotes.SavedLeft += r.savedLeft
		if rep.FirstError == "" {
			rep.FirstError = r.firstFailure
		}
	}
	rep.Answers = []Answer{}
	for key, n := range answers {
		rep.Answers = append(rep.Answers, Answer{Kind: key.kind.String(), Status: key.status, Code: key.code, Count: n,
			Expected: key.status != 0 && expected(key.status, key.code)})
	}
	slices.SortFunc(rep.Answers, func(a, b Answer) int {
		return cmp.Or(cmp.Compare(kindIndex(a.Kind), kindIndex(b.Kind)), cmp.Compare(a.Status, b.Status), strings.Compare(a.Code, b.Code))
	})
}

func kindIndex(name string) int { return slices.Index(kindNames[:], name) }

// WriteJSON writes the report as one JSON object.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the report as tables.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	limit := ""
	if rep.RateLimit > 0 {
		limit = fmt.Sprintf(", at most %g requests/s", rep.RateLimit)
	}
	fmt.Fprintf(&b, "upsell loadgen: %s, %d users on %d customers of MSP %s%s, %.2fs against %s",
		rep.Mode, rep.Users, rep.Customers, rep.MSPID, limit, rep.Elapsed, rep.Target)
	if rep.Interrupted {
		fmt.Fprintf(&b, " (interrupted; %d requests in flight abandoned)", rep.Abandoned)
	}
	b.WriteString("\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "KIND         \tREQUESTS\tOK\tREFUSED\tERRORS\tPER SEC\tP50 MS\tP95 MS\tP99 MS\tMAX MS\t")
	row := func(name string, k KindReport) {
		fmt.Fprintf(tw, "%-13s\t%d\t%d\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, k.Requests, k.OK, k.Refused, k.Errors,
			k.Throughput, k.Latency.P50, k.Latency.P95, k.Latency.P99, k.Latency.Max)
	}
	for _, k := range Kinds() {
		if kr := rep.Kinds[k.String()]; kr.Requests > 0 {
			row(k.String(), kr)
		}
	}
	row("all", rep.Total)
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.Mode == ModeMix {
		fmt.Fprintf(&b, "\nquotes: %d opened, %d submitted, %d saved and left\n", rep.Quotes.Opened, rep.Quotes.Submitted, rep.Quotes.SavedLeft)
	}
	if len(rep.Answers) > 0 {
		b.WriteString("\nanswers other than 2xx:\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  KIND\tSTATUS\tCODE\tCOUNT\t")
		for _, a := range rep.Answers {
			status, what := fmt.Sprint(a.Status), "error"
			if a.Status == 0 {
				status = "-"
			}
			if a.Expected {
				what = "expected"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", a.Kind, status, a.Code, a.Count, what)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if rep.Total.Errors == 0 {
		b.WriteString("\nno errors\n")
	} else {
		fmt.Fprintf(&b, "\n%d errors; the first: %s\n", rep.Total.Errors, rep.FirstError)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
