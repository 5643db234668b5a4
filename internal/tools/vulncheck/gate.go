package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"
)

// The gate reads govulncheck's -json stream (golang.org/x/vuln
// internal/govulncheck: a series of messages, each with one of config,
// progress, SBOM, osv or finding) and judges it against the accepted list.
// A vulnerability is reachable when a finding's trace starts at a function
// (a symbol-level finding: a call path from our code to the vulnerable
// symbol); module- and package-level findings only say that a vulnerable
// module is required or a vulnerable package imported.

type message struct {
	Config *struct {
		ScanLevel string `json:"scan_level"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *finding `json:"finding"`
}

type finding struct {
	OSV          string   `json:"osv"`
	FixedVersion string   `json:"fixed_version"`
	Trace        []*frame `json:"trace"`
}

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
		Column   int    `json:"column"`
	} `json:"position"`
}

// stdlib is the module of the standard library's findings.
const stdlib = "stdlib"

// report is what the gate needs of a govulncheck run.
type report struct {
	summaries map[string]string // by OSV ID
	findings  []*finding
}

// readReport decodes a govulncheck -json stream. It fails unless the
// stream has a config message of a symbol-level scan: without one,
// reachability cannot be judged.
func readReport(r io.Reader) (*report, error) {
	rep := &report{summaries: map[string]string{}}
	dec := json.NewDecoder(bufio.NewReader(r))
	level := ""
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading govulncheck's JSON output: %v", err)
		}
		switch {
		case m.Config != nil:
			level = m.Config.ScanLevel
		case m.OSV != nil:
			rep.summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil:
			if m.Finding.OSV == "" || len(m.Finding.Trace) == 0 || m.Finding.Trace[0] == nil {
				return nil, fmt.Errorf("govulncheck's JSON output has a finding without an ID or a trace")
			}
			rep.findings = append(rep.findings, m.Finding)
		}
	}
	if level != "symbol" {
		return nil, fmt.Errorf("govulncheck's JSON output has no config of a symbol-level scan (scan level %q)", level)
	}
	return rep, nil
}

// acceptance is a line of the accepted list: ID  reason  review-by.
type acceptance struct {
	ID       string
	Reason   string
	ReviewBy time.Time // a date (midnight UTC)
	Line     int
}

var (
	idRE         = regexp.MustCompile(`^GO-[0-9]{4}-[0-9]{4,}$`)
	dateRE       = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	acceptanceRE = regexp.MustCompile(`^(\S+)\s+(\S.*?)\s+(\S+)$`)
)

// parseAccepted reads the accepted list: blank lines and lines starting
// with # are skipped; every other line is an ID, a reason (free text) and
// a review-by date (YYYY-MM-DD), separated by white space.
func parseAccepted(r io.Reader, name string) ([]acceptance, error) {
	var list []acceptance
	lines := map[string]int{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := acceptanceRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("%s:%d: want `ID  reason  review-by-date`, got %q", name, n, line)
		}
		a := acceptance{ID: m[1], Reason: m[2], Line: n}
		if !idRE.MatchString(a.ID) {
			return nil, fmt.Errorf("%s:%d: %q is not a Go vulnerability ID (GO-YYYY-NNNN)", name, n, a.ID)
		}
		if !dateRE.MatchString(m[3]) {
			return nil, fmt.Errorf("%s:%d: the review-by date %q is not YYYY-MM-DD", name, n, m[3])
		}
		d, err := time.Parse(time.DateOnly, m[3])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: the review-by date: %v", name, n, err)
		}
		a.ReviewBy = d
		if prev, ok := lines[a.ID]; ok {
			return nil, fmt.Errorf("%s:%d: %s is listed already on line %d", name, n, a.ID, prev)
		}
		lines[a.ID] = n
		list = append(list, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return list, nil
}

// verdict kinds.
const (
	kindAccepted    = "accepted"     // reachable, accepted: WARNING
	kindNotAccepted = "not accepted" // reachable, not in the list: FAIL
	kindExpired     = "expired"      // reachable, accepted, past review-by: FAIL
	kindNotStdlib   = "not stdlib"   // reachable outside the standard library, ID in the list: FAIL
	kindGone        = "gone"         // in the list, not found: WARNING
	kindGoneExpired = "gone expired" // in the list past review-by, not found: FAIL
	kindOutOfScope  = "out of scope" // in the list, not found in a partial check: INFO
)

type verdict struct {
	ID      string
	Module  string // "" for the kinds gone*
	Kind    string
	Fail    bool
	Text    string   // the message, starting with WARNING:, FAIL: or INFO:
	Summary string   // for reachable findings: the vulnerability's summary
	Traces  []string // for reachable findings: distinct call paths, shortest first
}

// exampleTraces is how many call paths the output shows of a failing
// vulnerability (of an accepted one: one).
const exampleTraces = 5

// result is the judgement of a report.
type result struct {
	Verdicts     []verdict
	Reachable    int // reachable vulnerabilities (ID and module)
	Unreachable  int // IDs only required or imported, not called
	Failed       int
	AcceptedSeen int
}

// reachableKey is one vulnerability in one module: an ID can affect the
// standard library and a module (net/http and golang.org/x/net/http2).
type reachableKey struct{ ID, Module string }

// judge applies the accepted list to a report on the date today. partial
// says the check covered only some packages, so that an accepted finding
// not seen may still be reachable from the others.
func judge(rep *report, accepted []acceptance, today time.Time, listName string, partial bool) result {
	var res result
	today = time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, time.UTC)
	byID := map[string]acceptance{}
	for _, a := range accepted {
		byID[a.ID] = a
	}

	// The symbol-level findings of each vulnerability and module.
	sample := map[reachableKey][]*finding{}
	var keys []reachableKey
	called := map[string]bool{}
	all := map[string]bool{}
	for _, f := range rep.findings {
		all[f.OSV] = true
		if f.Trace[0].Function == "" {
			continue
		}
		called[f.OSV] = true
		k := reachableKey{f.OSV, f.Trace[0].Module}
		if sample[k] == nil {
			keys = append(keys, k)
		}
		sample[k] = append(sample[k], f)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].ID != keys[j].ID {
			return keys[i].ID < keys[j].ID
		}
		return keys[i].Module < keys[j].Module
	})
	res.Reachable = len(keys)
	for id := range all {
		if !called[id] {
			res.Unreachable++
		}
	}

	for _, k := range keys {
		// Shortest first, then by text: govulncheck's order varies.
		fs := sample[k]
		text := map[*finding]string{}
		for _, f := range fs {
			text[f] = describeTrace(f.Trace)
		}
		sort.SliceStable(fs, func(i, j int) bool {
			if len(fs[i].Trace) != len(fs[j].Trace) {
				return len(fs[i].Trace) < len(fs[j].Trace)
			}
			return text[fs[i]] < text[fs[j]]
		})
		f := fs[0]
		v := verdict{ID: k.ID, Module: k.Module, Summary: rep.summaries[k.ID]}
		seen := map[string]bool{}
		for _, f := range fs {
			if t := text[f]; !seen[t] {
				seen[t] = true
				v.Traces = append(v.Traces, t)
			}
		}
		what := fmt.Sprintf("%s (%s)", k.ID, describeFinding(f))
		a, ok := byID[k.ID]
		switch {
		case !ok:
			v.Kind, v.Fail = kindNotAccepted, true
			v.Text = fmt.Sprintf("FAIL: %s is reachable and not accepted; fix: %s", what, fixAdvice(f))
		case k.Module != stdlib:
			v.Kind, v.Fail = kindNotStdlib, true
			v.Text = fmt.Sprintf("FAIL: %s is reachable; %s:%d accepts %s for the standard library only, and this is module %s; fix: %s",
				what, listName, a.Line, k.ID, k.Module, fixAdvice(f))
		case today.After(a.ReviewBy):
			v.Kind, v.Fail = kindExpired, true
			v.Text = fmt.Sprintf("FAIL: %s is reachable; its acceptance (%s:%d) was to be reviewed by %s: fix it (%s), or renew the entry with a new reason and date; its reason was: %s",
				what, listName, a.Line, a.ReviewBy.Format(time.DateOnly), fixAdvice(f), a.Reason)
		default:
			v.Kind = kindAccepted
			res.AcceptedSeen++
			v.Text = fmt.Sprintf("WARNING: %s is reachable; accepted until %s: %s", what, a.ReviewBy.Format(time.DateOnly), a.Reason)
		}
		if v.Fail {
			res.Failed++
		}
		res.Verdicts = append(res.Verdicts, v)
	}

	for _, a := range accepted {
		if called[a.ID] {
			continue
		}
		v := verdict{ID: a.ID}
		switch {
		case today.After(a.ReviewBy):
			v.Kind, v.Fail = kindGoneExpired, true
			v.Text = fmt.Sprintf("FAIL: %s (%s:%d) was to be reviewed by %s and is no longer found: remove it from the list",
				a.ID, listName, a.Line, a.ReviewBy.Format(time.DateOnly))
			res.Failed++
		case partial:
			v.Kind = kindOutOfScope
			v.Text = fmt.Sprintf("INFO: %s (%s:%d) is not reachable from the packages checked", a.ID, listName, a.Line)
		default:
			v.Kind = kindGone
			v.Text = fmt.Sprintf("WARNING: %s (%s:%d) is no longer found: remove it from the list", a.ID, listName, a.Line)
		}
		res.Verdicts = append(res.Verdicts, v)
	}
	return res
}

// describeFinding says where: "net/http go1.26.8, fixed in go1.26.9".
func describeFinding(f *finding) string {
	t := f.Trace[0]
	var b strings.Builder
	if t.Module == stdlib {
		b.WriteString(t.Package)
	} else {
		b.WriteString(t.Module)
		if t.Package != "" && t.Package != t.Module {
			b.WriteString(" " + t.Package)
		}
	}
	if t.Version != "" {
		b.WriteString(" " + displayVersion(t.Module, t.Version))
	}
	if f.FixedVersion != "" {
		b.WriteString(", fixed in " + displayVersion(t.Module, f.FixedVersion))
	} else {
		b.WriteString(", no fix yet")
	}
	return b.String()
}

func fixAdvice(f *finding) string {
	t := f.Trace[0]
	switch {
	case f.FixedVersion == "":
		return "no fixed version is known yet; avoid the call"
	case t.Module == stdlib:
		return fmt.Sprintf("build with %s or later", displayVersion(stdlib, f.FixedVersion))
	default:
		return fmt.Sprintf("go get %s@%s", t.Module, f.FixedVersion)
	}
}

// displayVersion writes versions of the standard library as Go releases
// (v1.26.9 → go1.26.9).
func displayVersion(module, v string) string {
	if module == stdlib || module == "toolchain" {
		return "go" + strings.TrimPrefix(v, "v")
	}
	return v
}

// describeTrace renders a trace (vulnerable symbol first, our code last)
// as govulncheck's text output does: "pos: a.F calls b.G, which
// eventually calls c.H".
func describeTrace(trace []*frame) string {
	if len(trace) == 0 {
		return ""
	}
	entry := trace[len(trace)-1]
	s := symbol(entry)
	if p := entry.Position; p != nil && p.Filename != "" {
		s = fmt.Sprintf("%s:%d:%d: %s", p.Filename, p.Line, p.Column, s)
	}
	switch len(trace) {
	case 1:
		return s
	case 2:
		return s + " calls " + symbol(trace[0])
	default:
		return s + " calls " + symbol(trace[len(trace)-2]) + ", which eventually calls " + symbol(trace[0])
	}
}

func symbol(f *frame) string {
	s := f.Function
	if f.Receiver != "" {
		s = strings.TrimPrefix(f.Receiver, "*") + "." + s
	}
	if f.Package != "" {
		s = path.Base(f.Package) + "." + s
	}
	return s
}

// print writes the verdicts and a summary; each line starts with prefix.
func (res result) print(w io.Writer, prefix string) {
	for _, v := range res.Verdicts {
		fmt.Fprintf(w, "%s%s\n", prefix, v.Text)
		if v.Summary != "" {
			fmt.Fprintf(w, "%s    %s\n", prefix, v.Summary)
		}
		n := len(v.Traces)
		if !v.Fail {
			n = min(n, 1)
		} else {
			n = min(n, exampleTraces)
		}
		for i, t := range v.Traces[:n] {
			if len(v.Traces) == 1 {
				fmt.Fprintf(w, "%s    call path: %s\n", prefix, t)
			} else {
				fmt.Fprintf(w, "%s    call path %d of %d: %s\n", prefix, i+1, len(v.Traces), t)
			}
		}
	}
	if res.Unreachable > 0 {
		fmt.Fprintf(w, "%s%d more vulnerabilit%s in required modules or imported packages %s not reachable from our code (not gated)\n",
			prefix, res.Unreachable, plural(res.Unreachable, "y", "ies"), plural(res.Unreachable, "is", "are"))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// runGate is the gate command: exit 0 when every reachable vulnerability
// is accepted and no acceptance is past its review date, 1 otherwise, 2
// when it cannot judge.
func runGate(listName string, in io.Reader, out io.Writer, today time.Time, partial bool) int {
	lf, err := os.Open(listName)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vulncheck: the accepted list: %v\n", err)
		return 2
	}
	defer lf.Close()
	accepted, err := parseAccepted(lf, listName)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vulncheck: %v\n", err)
		return 2
	}
	rep, err := readReport(in)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vulncheck: %v\n", err)
		return 2
	}
	res := judge(rep, accepted, today, listName, partial)
	res.print(out, "vulncheck: ")
	if res.Failed > 0 {
		fmt.Fprintf(out, "vulncheck: FAILED: %d problem%s above (FAIL); our code reaches %d known vulnerabilit%s, %d of them accepted in %s\n",
			res.Failed, plural(res.Failed, "", "s"), res.Reachable, plural(res.Reachable, "y", "ies"), res.AcceptedSeen, listName)
		return 1
	}
	warnings := 0
	for _, v := range res.Verdicts {
		if strings.HasPrefix(v.Text, "WARNING") {
			warnings++
		}
	}
	switch {
	case res.Reachable == 0 && warnings == 0:
		fmt.Fprintf(out, "vulncheck: OK: no known vulnerability is reachable from our code\n")
	case res.Reachable == 0:
		fmt.Fprintf(out, "vulncheck: OK with %d WARNING%s: no known vulnerability is reachable from our code\n", warnings, plural(warnings, "", "s"))
	default:
		fmt.Fprintf(out, "vulncheck: OK with %d WARNING%s: our code reaches %d known vulnerabilit%s, all accepted in %s until their review dates\n",
			warnings, plural(warnings, "", "s"), res.Reachable, plural(res.Reachable, "y", "ies"), listName)
	}
	return 0
}
