package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The modes of a run.
const (
	// ModeMix is the flow of MSP staff: read the customer, open a quote,
	// raise seats and/or add a product, preview, then either save and
	// leave it, or review, acknowledge and submit.
	ModeMix = "mix"
	// ModeCommandsOnly sends only commands that append one event each:
	// open a quote, then raise seats on it (RaisesPerQuote times, then a
	// new quote), round the user's customers.
	ModeCommandsOnly = "commands-only"
)

// RaisesPerQuote is how many seat raises a quote gets in commands-only
// mode before the user opens a new one, so that streams stay short.
const RaisesPerQuote = 20

// maxSeats is the domain's bound on a quantity (domain.MaxSeats).
const maxSeats = 10_000_000

// Config is a run.
type Config struct {
	Target string // the server's base URL, e.g. http://127.0.0.1:8080
	Data   *Data
	// The run ends after Duration, or after Requests requests, whichever
	// comes first; at least one must be set.
	Duration time.Duration
	Requests int64
	// Rate caps the requests per second over all users (0: no cap).
	Rate         float64
	CommandsOnly bool
	// SubmitRatio is the share of quotes carried to submit in the mix; the
	// others are saved and left.
	SubmitRatio float64
	// Timeout bounds one request (default 30s).
	Timeout time.Duration
	// Progress is how often a progress line goes to Log (0: never).
	Progress time.Duration
	Log      io.Writer
	// DataWait bounds the wait for the server to show the imported
	// customers (its customers projector is asynchronous); default 2m.
	DataWait time.Duration
	// Grace is how long requests in flight may finish after ctx ends
	// (default 5s); then they are cut off and counted as abandoned.
	Grace time.Duration
}

// NewClient is an HTTP client for users concurrent users of one server:
// kept-alive connections, one per user, so that connection set-up does not
// dominate; no proxy, no compression. It carries the requests outside the
// measurement (waiting for the data, prefetching); the measured ones go
// through each user's own conn.
func NewClient(users int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        users + 8,
		MaxIdleConnsPerHost: users + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// Check asks the server's /healthz whether it answers, and says which URL
// did not.
func Check(ctx context.Context, target string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := NewClient(1, 10*time.Second)
	defer client.CloseIdleConnections()
	u := strings.TrimRight(target, "/") + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("target %s: %w", target, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("the server at %s does not answer (GET %s: %w); start it with `upsell serve` or give --target", target, u, unwrapURLError(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the server at %s answers GET /healthz with %s: is it `upsell serve`?", target, resp.Status)
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Run drives the server at cfg.Target with cfg.Data's users, whose data
// must have been imported into the server's database. It waits for the
// server to show the data, runs until the duration or the request count is
// reached or ctx ends (requests in flight then get cfg.Grace to finish),
// and reports. An error means the run could not start; failed requests are
// in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Duration <= 0 && cfg.Requests <= 0 {
		return nil, errors.New("loadgen: set a duration or a number of requests")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.DataWait <= 0 {
		cfg.DataWait = 2 * time.Minute
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	users := len(cfg.Data.Users)
	r := &runner{
		cfg:    cfg,
		base:   strings.TrimRight(cfg.Target, "/"),
		client: NewClient(users, cfg.Timeout),
		stop:   make(chan struct{}),
	}
	defer r.client.CloseIdleConnections()
	if cfg.Rate > 0 {
		r.interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	r.budget.Store(cfg.Requests)

	if err := r.waitForData(ctx); err != nil {
		return nil, err
	}
	workers := make([]*worker, users)
	for j, u := range cfg.Data.Users {
		workers[j] = &worker{
			r: r, user: u, rec: newRecorder(),
			rng: rand.New(rand.NewPCG(cfg.Data.Seed, uint64(j)+1<<40)),
		}
	}
	if cfg.CommandsOnly {
		if err := r.prefetch(ctx, workers); err != nil {
			return nil, err
		}
	}
	r.client.CloseIdleConnections() // the measured requests have connections of their own

	// Requests run on a context of their own: ctx ending stops the users
	// from starting more, and cuts off what is still in flight after the
	// grace period.
	reqCtx, cutOff := context.WithCancel(context.WithoutCancel(ctx))
	defer cutOff()
	r.reqCtx = reqCtx
	for _, w := range workers {
		c, err := newConn(reqCtx, r.base, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		w.conn = c
		defer c.close()
	}
	var graceTimer atomic.Pointer[time.Timer]
	stopWatching := context.AfterFunc(ctx, func() {
		r.halt()
		graceTimer.Store(time.AfterFunc(cfg.Grace, cutOff))
	})
	defer stopWatching()

	start := time.Now()
	if cfg.Duration > 0 {
		t := time.AfterFunc(cfg.Duration, r.halt)
		defer t.Stop()
	}
	progressDone := make(chan struct{})
	var progress sync.WaitGroup
	if cfg.Progress > 0 {
		progress.Go(func() { r.reportProgress(start, progressDone) })
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(w.run)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(progressDone)
	progress.Wait()
	if t := graceTimer.Load(); t != nil {
		t.Stop()
	}

	mode := ModeMix
	if cfg.CommandsOnly {
		mode = ModeCommandsOnly
	}
	rep := &Report{
		Target: r.base, Mode: mode, Seed: cfg.Data.Seed, MSPID: cfg.Data.MSPID,
		Users: users, Customers: len(cfg.Data.File.Customers), RateLimit: cfg.Rate,
		Interrupted: ctx.Err() != nil, Abandoned: int(r.abandoned.Load()),
	}
	recs := make([]*recorder, len(workers))
	for i, w := range workers {
		recs[i] = w.rec
	}
	rep.build(recs, elapsed, ExpectedRefusal)
	return rep, nil
}

// ExpectedRefusal reports whether an answer is one the flow copes with
// rather than an error: the quote or the customer changed under the user
// (another loadgen run on the same data, or a person), so it drops the
// quote and starts another.
func ExpectedRefusal(status int, code string) bool {
	switch status {
	case http.StatusConflict:
		return code == "baseline_changed" || code == "version_conflict" || code == "quote_closed"
	case http.StatusPreconditionFailed:
		return code == "precondition_failed"
	case http.StatusUnprocessableEntity:
		return code == "seats_decrease" || code == "product_already_present"
	}
	return false
}

type runner struct {
	cfg    Config
	base   string
	client *http.Client
	reqCtx context.Context

	stop     chan struct{}
	stopOnce sync.Once
	budget   atomic.Int64 // requests left, when cfg.Requests > 0

	mu       sync.Mutex // guards next
	next     time.Time  // the pacer's next free slot
	interval time.Duration

	sent, failed, abandoned atomic.Int64
}

func (r *runner) halt() { r.stopOnce.Do(func() { close(r.stop) }) }

// take admits one more request: false when the run is over. With a rate,
// it waits for the request's slot.
func (r *runner) take() bool {
	select {
	case <-r.stop:
		return false
	default:
	}
	if r.cfg.Requests > 0 && r.budget.Add(-1) < 0 {
		r.halt()
		return false
	}
	if r.interval <= 0 {
		return true
	}
	r.mu.Lock()
	now := time.Now()
	slot := r.next
	if slot.Before(now) {
		slot = now // behind: no burst to catch up
	}
	r.next = slot.Add(r.interval)
	r.mu.Unlock()
	if wait := time.Until(slot); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-r.stop:
			return false
		case <-t.C:
		}
	}
	return true
}

func (r *runner) reportProgress(start time.Time, done <-chan struct{}) {
	t := time.NewTicker(r.cfg.Progress)
	defer t.Stop()
	last, lastAt := int64(0), start
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			n := r.sent.Load()
			fmt.Fprintf(r.cfg.Log, "loadgen: %6.1fs  %d requests  %.0f/s now  %.0f/s overall  %d errors\n",
				now.Sub(start).Seconds(), n, float64(n-last)/now.Sub(lastAt).Seconds(),
				float64(n)/now.Sub(start).Seconds(), r.failed.Load())
			last, lastAt = n, now
		}
	}
}

// get is a request outside the measurement (waiting, prefetching).
func (r *runner) get(ctx context.Context, key, path string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s%s: %w", r.base, path, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s%s: %w", r.base, path, err)
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, fmt.Errorf("GET %s%s: unreadable answer: %w", r.base, path, err)
		}
	}
	return resp.StatusCode, nil
}

// waitForData waits until the server shows every user's last customer: the
// customers projector runs behind the import, and in commit order.
func (r *runner) waitForData(ctx context.Context) error {
	deadline := time.Now().Add(r.cfg.DataWait)
	said := false
	for _, u := range r.cfg.Data.Users {
		path := "/v1/customers/" + url.PathEscape(u.Customers[len(u.Customers)-1])
		for {
			status, err := r.get(ctx, u.Key, path, nil)
			switch {
			case err != nil:
				return err
			case status == http.StatusOK:
			case status == http.StatusUnauthorized:
				return fmt.Errorf("the server at %s does not know the API key of %s (401): it serves another database than DATABASE_URL's, or the data was not imported", r.base, u.ID)
			case status == http.StatusNotFound:
				if time.Now().After(deadline) {
					return fmt.Errorf("the server at %s still does not show customer %s after %s: is its customers projector running?", r.base, path, r.cfg.DataWait)
				}
				if !said {
					fmt.Fprintf(r.cfg.Log, "loadgen: waiting for the server to show the imported customers\n")
					said = true
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("interrupted while waiting for the server to show the customers: %w", ctx.Err())
				case <-time.After(200 * time.Millisecond):
				}
				continue
			default:
				return fmt.Errorf("the server at %s answers GET %s with %d", r.base, path, status)
			}
			break
		}
	}
	return nil
}

// prefetch reads every customer of every user (commands-only mode needs
// their lines to raise seats on), outside the measurement.
func (r *runner) prefetch(ctx context.Context, workers []*worker) error {
	fmt.Fprintf(r.cfg.Log, "loadgen: reading %d customers before the run\n", len(r.cfg.Data.File.Customers))
	errs := make([]error, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			w.known = map[string]customerView{}
			for _, id := range w.user.Customers {
				var c customerView
				status, err := r.get(ctx, w.user.Key, "/v1/customers/"+url.PathEscape(id), &c)
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("GET /v1/customers/%s: %d", id, status)
				}
				if err != nil {
					errs[i] = err
					return
				}
				w.known[id] = c
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// customerView is what the flow reads of GET /v1/customers/{id}.
type customerView struct {
	ID         string `json:"id"`
	TotalUsers int    `json:"total_users"`
	Lines      []line `json:"lines"`
}

type line struct {
	ProductCode string `json:"product_code"`
	TermType    string `json:"term_type"`
	Seats       int    `json:"seats"`
}

// quoteVersion receives the version a quote answer's ETag ("<version>",
// API.md) gives, without decoding its body: what a command's answer tells
// the flow.
type quoteVersion int64

// quoteRef is a command's answer.
type quoteRef struct {
	QuoteID string `json:"quote_id"`
	Version int64  `json:"version"`
	Status  string `json:"status"`
}

// worker is one virtual user. It runs one request at a time.
type worker struct {
	r    *runner
	user User
	rng  *rand.Rand
	rec  *recorder
	conn *conn // the measured requests'

	// commands-only mode
	known  map[string]customerView
	quotes map[string]*openQuote
	next   int
}

type openQuote struct {
	ref    quoteRef
	seats  map[string]int
	codes  []string
	raises int
}

func (w *worker) run() {
	for {
		select {
		case <-w.r.stop:
			return
		default:
		}
		if w.r.cfg.CommandsOnly {
			w.commandStep()
		} else {
			w.flow()
		}
	}
}

// call sends one measured request and records it. want is the status of
// success; out, when not nil, receives a successful answer's JSON (a
// *quoteVersion: its ETag's version, which a quote answer must carry);
// ifMatch > 0 is sent as If-Match. It reports whether the flow may go on.
func (w *worker) call(k Kind, method, path string, body any, ifMatch int64, want int, out any) bool {
	r := w.r
	if !r.take() {
		return false
	}
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			panic(err) // the flow's own bodies always encode
		}
	}
	start := time.Now()
	resp, err := w.conn.do(method, path, w.user.Key, payload, ifMatch)
	d := time.Since(start)
	if err != nil && r.reqCtx.Err() != nil {
		r.abandoned.Add(1) // cut off by the end of the grace period
		return false
	}
	r.sent.Add(1)
	if err != nil {
		r.failed.Add(1)
		w.rec.record(k, d, 0, transportCode(err), Failed, fmt.Sprintf("%s %s: %v", method, path, err))
		return false
	}
	data := resp.body
	if resp.status == want {
		if v, ok := out.(*quoteVersion); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(resp.etag, `"`), `"`), 10, 64)
			if err != nil || n < 1 {
				r.failed.Add(1)
				w.rec.record(k, d, resp.status, "no_etag", Failed, fmt.Sprintf("%s %s: the answer has no ETag with the quote's version (%q)", method, path, resp.etag))
				return false
			}
			*v = quoteVersion(n)
		} else if out != nil {
			if err := json.Unmarshal(data, out); err != nil {
				r.failed.Add(1)
				w.rec.record(k, d, resp.status, "unreadable_answer", Failed, fmt.Sprintf("%s %s: %v: %.200s", method, path, err, data))
				return false
			}
		}
		w.rec.record(k, d, resp.status, "", OK, "")
		return true
	}
	var problem struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(data, &problem)
	if ExpectedRefusal(resp.status, problem.Code) {
		w.rec.record(k, d, resp.status, problem.Code, Refused, "")
		return false
	}
	r.failed.Add(1)
	w.rec.record(k, d, resp.status, problem.Code, Failed,
		fmt.Sprintf("%s %s: %d (want %d): %.300s", method, path, resp.status, want, bytes.TrimSpace(data)))
	return false
}

func transportCode(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection_reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection_closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "no_answer"
}

// flow is one quote of the mix, from reading the customer to saving or
// submitting. Any refusal or failure ends it; the next one starts afresh.
func (w *worker) flow() {
	cust := w.user.Customers[w.rng.IntN(len(w.user.Customers))]
	var c customerView
	if !w.call(KindCustomer, http.MethodGet, "/v1/customers/"+url.PathEscape(cust), nil, 0, http.StatusOK, &c) {
		return
	}
	var q quoteRef
	if !w.call(KindOpen, http.MethodPost, "/v1/customers/"+url.PathEscape(cust)+"/change-quotes", nil, 0, http.StatusCreated, &q) {
		return
	}
	w.rec.opened++
	path := "/v1/change-quotes/" + url.PathEscape(q.QuoteID)
	command := func(k Kind, method, suffix string, body any) bool {
		var v quoteVersion
		if !w.call(k, method, path+suffix, body, q.Version, http.StatusOK, &v) {
			return false
		}
		q.Version = int64(v)
		return true
	}

	var addable []string
	for _, p := range w.r.cfg.Data.File.Products {
		if !slices.ContainsFunc(c.Lines, func(l line) bool { return l.ProductCode == p.Code }) {
			addable = append(addable, p.Code)
		}
	}
	raise := len(c.Lines) > 0 && w.rng.Float64() < 0.8
	add := len(addable) > 0 && w.rng.Float64() < 0.5
	if !raise && !add { // review needs a change
		raise = len(c.Lines) > 0
		add = !raise && len(addable) > 0
	}
	changed := false
	if raise {
		l := c.Lines[w.rng.IntN(len(c.Lines))]
		if total := l.Seats + 1 + w.rng.IntN(25); total <= maxSeats {
			if !command(KindSeats, http.MethodPut, "/seats", map[string]any{"product_code": l.ProductCode, "total_seats": total}) {
				return
			}
			changed = true
		}
	}
	if add {
		p := w.r.cfg.Data.Catalog[addable[w.rng.IntN(len(addable))]]
		seats := max(1, min(c.TotalUsers, maxSeats))
		if !p.PerUser {
			seats = 1 + w.rng.IntN(3)
		}
		term := p.TermTypes[w.rng.IntN(len(p.TermTypes))]
		if !command(KindAddProduct, http.MethodPost, "/products", map[string]any{"product_code": p.Code, "term_type": term, "seats": seats}) {
			return
		}
		changed = true
	}
	if !changed {
		return // nothing left to raise or add: the quote stays a draft
	}
	var preview struct {
		Version int64 `json:"version"`
	}
	if !w.call(KindPreview, http.MethodGet, path+"/preview", nil, 0, http.StatusOK, &preview) {
		return
	}
	submit := w.rng.Float64() < w.r.cfg.SubmitRatio
	if !submit || w.rng.IntN(4) == 0 { // some quotes are saved before their review
		if !command(KindSave, http.MethodPost, "/save", nil) {
			return
		}
		if !submit {
			w.rec.savedLeft++
			return
		}
	}
	if !command(KindReview, http.MethodPost, "/review", nil) ||
		!command(KindAcknowledge, http.MethodPost, "/acknowledgements", map[string]bool{"msa_governs_order": true, "authorized_to_order": true}) ||
		!command(KindSubmit, http.MethodPost, "/submit", nil) {
		return
	}
	w.rec.submitted++
}

// commandStep is one request of commands-only mode, round the user's
// customers: open a quote on a customer without one (or whose quote had
// RaisesPerQuote raises), else raise a line's seats on its quote by 1 to 3.
// Each appends one event.
func (w *worker) commandStep() {
	if w.quotes == nil {
		w.quotes = map[string]*openQuote{}
	}
	cust := w.user.Customers[w.next%len(w.user.Customers)]
	w.next++
	c := w.known[cust]
	if len(c.Lines) == 0 {
		return // nothing to raise (not in loadgen's data)
	}
	q := w.quotes[cust]
	if q == nil || q.raises >= RaisesPerQuote {
		var ref quoteRef
		if !w.call(KindOpen, http.MethodPost, "/v1/customers/"+url.PathEscape(cust)+"/change-quotes", nil, 0, http.StatusCreated, &ref) {
			delete(w.quotes, cust)
			return
		}
		w.rec.opened++
		q = &openQuote{ref: ref, seats: map[string]int{}}
		for _, l := range c.Lines {
			q.seats[l.ProductCode] = l.Seats
			q.codes = append(q.codes, l.ProductCode)
		}
		w.quotes[cust] = q
		return
	}
	code := q.codes[w.rng.IntN(len(q.codes))]
	total := q.seats[code] + 1 + w.rng.IntN(3)
	if total > maxSeats {
		delete(w.quotes, cust)
		return
	}
	var v quoteVersion
	if !w.call(KindSeats, http.MethodPut, "/v1/change-quotes/"+url.PathEscape(q.ref.QuoteID)+"/seats",
		map[string]any{"product_code": code, "total_seats": total}, q.ref.Version, http.StatusOK, &v) {
		delete(w.quotes, cust)
		return
	}
	q.ref.Version = int64(v)
	q.seats[code] = total
	q.raises++
}
