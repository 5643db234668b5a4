package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/upsell-dev/upsell/importer"
)

// TestHelperCrashServeProcess is `upsell serve --addr 127.0.0.1:0` in a
// process of its own, which TestServeKilledUnderLoad starts (re-running
// this test binary) and kills. Run normally, it does nothing.
func TestHelperCrashServeProcess(t *testing.T) {
	if os.Getenv("UPSELL_TEST_CRASH_SERVE") != "1" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, os.Getenv, os.Stdout, os.Stderr))
}

// crashServe is `upsell serve` running in a child process.
type crashServe struct {
	cmd            *exec.Cmd
	base           string // http://host:port, once it serves
	stdout, stderr *syncBuffer
	exited         chan error
}

// startCrashServe starts `upsell serve` on the database at url, with the
// default message transport, and waits until it says where it listens.
func startCrashServe(t *testing.T, url string) *crashServe {
	t.Helper()
	p := &crashServe{stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperCrashServeProcess$", "-test.count=1", "-test.v=false")
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UPSELL_PUBLISH_URL=") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			environ = append(environ, kv)
		}
	}
	p.cmd.Env = append(environ, "UPSELL_TEST_CRASH_SERVE=1", "DATABASE_URL="+url)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		err := <-p.exited
		p.exited <- err
	})
	deadline := time.Now().Add(relayWait)
	for {
		if m := servingLine.FindStringSubmatch(p.stdout.String()); m != nil {
			p.base = m[1]
			return p
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("serve process ended (%v) before serving; stdout %q, stderr:\n%s", err, p.stdout.String(), p.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve process did not say where it listens within %s; stdout %q, stderr:\n%s", relayWait, p.stdout.String(), p.stderr.String())
		}
	}
}

// kill sends sig and waits for the process to end.
func (p *crashServe) kill(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	return killChild(t, "serve", p.cmd, p.exited, p.stderr, sig)
}

// crashGate tells the clients where the serve process of the moment
// listens: they wait while none is up, and stop once the gate is closed.
// The last process only drains: it takes the retries of the commands a
// kill cut, and no new request.
type crashGate struct {
	mu          sync.Mutex
	base        string
	incarnation int
	draining    bool
	up          chan struct{} // closed while a process is up
	done        chan struct{} // closed when the run is over
}

func newCrashGate() *crashGate {
	return &crashGate{up: make(chan struct{}), done: make(chan struct{})}
}

// open lets the clients at the process listening on base.
func (g *crashGate) open(base string, incarnation int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.base, g.incarnation = base, incarnation
	close(g.up)
}

// drain lets only the retries at the process listening on base: a client
// gets an answer to every command it sent, then stops.
func (g *crashGate) drain(base string, incarnation int) {
	g.mu.Lock()
	g.draining = true
	g.mu.Unlock()
	g.open(base, incarnation)
}

// shut holds new requests back: the process is about to be killed.
func (g *crashGate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.base = ""
	g.up = make(chan struct{})
}

// wait returns the base URL of the process up now, waiting for one; false
// once the run is over, or, for a new request (not a retry), once the gate
// drains.
func (g *crashGate) wait(retry bool) (string, int, bool) {
	for {
		g.mu.Lock()
		up, base, inc, draining := g.up, g.base, g.incarnation, g.draining
		g.mu.Unlock()
		if draining && !retry {
			return "", 0, false
		}
		select {
		case <-g.done:
			return "", 0, false
		default:
		}
		select {
		case <-up:
			if base != "" {
				return base, inc, true
			}
		case <-g.done:
			return "", 0, false
		}
	}
}

// crashRequest is one request a client sent, and what became of it. A
// command cut by a kill is sent again, the same request with the same
// Idempotency-Key, each attempt a crashRequest with an X-Request-ID of its
// own.
type crashRequest struct {
	ID           string // its X-Request-ID
	Key          string // a command's Idempotency-Key
	Attempt      int    // 1, then 2, ... for the retries of a command
	Incarnation  int    // the serve process it went to, from 1
	Method, Path string
	Command      bool   // POST, PUT or DELETE
	Want         int    // the status the client's flow expects
	Status       int    // the answer's; 0: no (whole) answer
	Code         string // the problem's code
	Err          string // why there was no answer
	QuoteID      string // the quote of the command (the one opened, for an open)
	Version      int64  // the version a 2xx answer reported
	Body         string // the answer's body
	ETag         string // the answer's ETag
	Replayed     bool   // the answer said Idempotent-Replayed: true
}

// answered reports whether the request got a whole answer.
func (r *crashRequest) answered() bool { return r.Status != 0 }

// crashClient is an MSP user working on customers of its own, one quote at
// a time, as fast as the server answers: every kind of command, and now and
// then one the API must refuse (and so append nothing for).
type crashClient struct {
	n         int
	key       string
	customers []string
	catalog   []importer.Product
	gate      *crashGate
	http      *http.Client
	rng       *rand.Rand
	succeeded *atomic.Int64 // 2xx commands of every client
	seq, keys int
	reqs      []*crashRequest
}

// send sends one request to the serve process up now and records it; nil
// once the run is over. A command carries an Idempotency-Key of its own
// and, when a kill cuts it, is sent again with that key (and a new
// X-Request-ID) to the next process, until it gets an answer: the last
// attempt is returned, unanswered only when the run ended first.
func (c *crashClient) send(method, path, body string, ifMatch int64, want int, quoteID string) *crashRequest {
	base, inc, ok := c.gate.wait(false)
	if !ok {
		return nil
	}
	command := method != http.MethodGet
	var key string
	if command {
		c.keys++
		key = fmt.Sprintf("crash-c%02d-k%06d", c.n, c.keys)
	}
	for attempt := 1; ; attempt++ {
		r := c.attempt(base, inc, key, attempt, method, path, body, ifMatch, want, quoteID)
		if r.answered() || !command {
			return r
		}
		if base, inc, ok = c.gate.wait(true); !ok {
			return r
		}
	}
}

// attempt sends a request once, with a new X-Request-ID, to the process at
// base.
func (c *crashClient) attempt(base string, inc int, key string, attempt int, method, path, body string, ifMatch int64, want int, quoteID string) *crashRequest {
	c.seq++
	r := &crashRequest{
		ID: fmt.Sprintf("crash-c%02d-%06d", c.n, c.seq), Key: key, Attempt: attempt, Incarnation: inc, Method: method, Path: path,
		Command: method != http.MethodGet, Want: want, QuoteID: quoteID,
	}
	c.reqs = append(c.reqs, r)
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		panic(err) // the test's own paths
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("X-Request-ID", r.ID)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch >= 0 {
		req.Header.Set("If-Match", `"`+strconv.FormatInt(ifMatch, 10)+`"`)
	}
	resp, err := c.http.Do(req)
	var data []byte
	if err == nil {
		data, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		// No answer, or a cut one: the command may or may not have had
		// its effect.
		r.Err = err.Error()
		return r
	}
	r.Status = resp.StatusCode
	r.Body = string(data)
	r.ETag = resp.Header.Get("ETag")
	r.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	if got := resp.Header.Get("X-Request-ID"); got != r.ID {
		r.Err = fmt.Sprintf("the answer's X-Request-ID is %q", got)
	}
	if r.Status >= 300 {
		var problem struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(data, &problem)
		r.Code = problem.Code
		return r
	}
	if !r.Command {
		return r
	}
	var ref struct {
		QuoteID string `json:"quote_id"`
		Version int64  `json:"version"`
	}
	if err := json.Unmarshal(data, &ref); err != nil || ref.QuoteID == "" || ref.Version < 1 ||
		(r.QuoteID != "" && ref.QuoteID != r.QuoteID) {
		r.Err = fmt.Sprintf("the answer is not {quote_id, version} of the quote (%v)", err)
		return r
	}
	r.QuoteID, r.Version = ref.QuoteID, ref.Version
	c.succeeded.Add(1)
	return r
}

// run carries quotes through their flows until the run is over.
func (c *crashClient) run() {
	for c.flow() {
	}
}

// flow is one quote, from opening it to leaving it saved, cancelled or
// submitted. A request without an answer, or with an answer the flow did
// not expect, ends it (the next starts afresh); false once the run is over.
func (c *crashClient) flow() bool {
	cust := c.customers[c.rng.IntN(len(c.customers))]
	r := c.send(http.MethodPost, "/v1/customers/"+url.PathEscape(cust)+"/change-quotes", "", -1, http.StatusCreated, "")
	if r == nil {
		return false
	}
	if r.Status != r.Want || r.Err != "" {
		return true
	}
	quote, version := r.QuoteID, r.Version
	path := "/v1/change-quotes/" + quote

	// The baseline, from the preview: the quote's read model is written
	// with the command, so it shows the version just answered.
	r = c.send(http.MethodGet, path+"/preview", "", -1, http.StatusOK, quote)
	if r == nil {
		return false
	}
	if r.Status != r.Want || r.Err != "" {
		return true
	}
	var preview struct {
		Version         int64 `json:"version"`
		CurrentProducts []struct {
			ProductCode string `json:"product_code"`
			TermType    string `json:"term_type"`
			Seats       int    `json:"seats"`
		} `json:"current_products"`
	}
	if err := json.Unmarshal([]byte(r.Body), &preview); err != nil || preview.Version != version || len(preview.CurrentProducts) == 0 {
		r.Err = fmt.Sprintf("a preview at version %d with products, after the open answered version %d (%v)", preview.Version, version, err)
		return true
	}

	over := false
	// cmd sends a command on the quote (with If-Match: its version, or
	// ifMatch when not 0) and reports whether the answer was want.
	cmd := func(method, suffix, body string, ifMatch int64, want int) bool {
		if ifMatch == 0 {
			ifMatch = version
		}
		r := c.send(method, path+suffix, body, ifMatch, want, quote)
		if r == nil {
			over = true
			return false
		}
		if r.Status != want || r.Err != "" {
			return false
		}
		if want < 300 {
			version = r.Version
		}
		return true
	}
	seatsBody := func(code string, total int) string {
		return fmt.Sprintf(`{"product_code": %q, "total_seats": %d}`, code, total)
	}
	line := preview.CurrentProducts[c.rng.IntN(len(preview.CurrentProducts))]
	if line.Seats >= 2 && c.rng.IntN(4) == 0 {
		// Refused: an upsell never lowers a quantity.
		if !cmd(http.MethodPut, "/seats", seatsBody(line.ProductCode, line.Seats-1-c.rng.IntN(min(line.Seats-1, 10))), 0, http.StatusUnprocessableEntity) {
			return !over
		}
	}
	if c.rng.IntN(5) == 0 {
		// Refused: a product of the subscription cannot be added again.
		body := fmt.Sprintf(`{"product_code": %q, "term_type": %q, "seats": %d}`, line.ProductCode, line.TermType, line.Seats+1)
		if !cmd(http.MethodPost, "/products", body, 0, http.StatusUnprocessableEntity) {
			return !over
		}
	}
	if !cmd(http.MethodPut, "/seats", seatsBody(line.ProductCode, line.Seats+1+c.rng.IntN(40)), 0, http.StatusOK) {
		return !over
	}
	if c.rng.IntN(2) == 0 {
		var addable []importer.Product
		for _, p := range c.catalog {
			present := false
			for _, l := range preview.CurrentProducts {
				present = present || l.ProductCode == p.Code
			}
			if !present {
				addable = append(addable, p)
			}
		}
		if len(addable) > 0 {
			p := addable[c.rng.IntN(len(addable))]
			seats := line.Seats
			if !p.PerUser {
				seats = 1 + c.rng.IntN(3)
			}
			body := fmt.Sprintf(`{"product_code": %q, "term_type": %q, "seats": %d}`, p.Code, p.TermTypes[c.rng.IntN(len(p.TermTypes))], seats)
			if !cmd(http.MethodPost, "/products", body, 0, http.StatusOK) {
				return !over
			}
		}
	}
	if c.rng.IntN(5) == 0 {
		// Refused: If-Match names a version that is not the quote's.
		if !cmd(http.MethodPost, "/save", "", version-1, http.StatusPreconditionFailed) {
			return !over
		}
	}
	acks := `{"msa_governs_order": true, "authorized_to_order": true}`
	switch k := c.rng.IntN(20); {
	case k < 3: // cancelled; a cancelled quote refuses everything
		if cmd(http.MethodPost, "/cancel", "", 0, http.StatusOK) && c.rng.IntN(2) == 0 {
			cmd(http.MethodPost, "/save", "", 0, http.StatusConflict)
		}
	case k < 9: // saved and left
		cmd(http.MethodPost, "/save", "", 0, http.StatusOK)
	default: // submitted
		if c.rng.IntN(3) == 0 && !cmd(http.MethodPost, "/save", "", 0, http.StatusOK) {
			return !over
		}
		if !cmd(http.MethodPost, "/review", "", 0, http.StatusOK) {
			return !over
		}
		if c.rng.IntN(3) == 0 && !cmd(http.MethodPost, "/submit", "", 0, http.StatusUnprocessableEntity) {
			return !over // refused: no acknowledgements yet
		}
		if !cmd(http.MethodPost, "/acknowledgements", acks, 0, http.StatusOK) || !cmd(http.MethodPost, "/submit", "", 0, http.StatusOK) {
			return !over
		}
		if c.rng.IntN(3) == 0 {
			// Refused: a submitted quote is closed.
			cmd(http.MethodPost, "/acknowledgements", acks, 0, http.StatusConflict)
		}
	}
	return !over
}
