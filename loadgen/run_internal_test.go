package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServe answers the requests of commands-only mode as upsell serve
// does (customers with one line each, quotes whose seats go up), checking
// what loadgen sends; with hang, a seats request waits until the client
// goes away.
type fakeServe struct {
	t     *testing.T
	hang  bool
	conns atomic.Int64 // connections accepted
	seats atomic.Int64 // seat raises answered

	mu       sync.Mutex
	versions map[string]int64 // quote id -> version
	quotes   int
}

func (f *fakeServe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		http.Error(w, "no key", http.StatusUnauthorized)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodGet && len(parts) == 3 && parts[1] == "customers":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"total_users":5,"lines":[{"product_code":"LG-A","term_type":"monthly","seats":5}]}`, parts[2])
	case r.Method == http.MethodPost && len(parts) == 4 && parts[3] == "change-quotes":
		f.mu.Lock()
		f.quotes++
		id := fmt.Sprintf("q%d", f.quotes)
		f.versions[id] = 1
		f.mu.Unlock()
		w.Header().Set("ETag", `"1"`)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"quote_id":%q,"version":1,"status":"draft"}`, id)
	case r.Method == http.MethodPut && len(parts) == 4 && parts[3] == "seats":
		if f.hang {
			_, _ = io.Copy(io.Discard, r.Body) // then net/http sees the client go
			<-r.Context().Done()
			return
		}
		var body struct {
			ProductCode string `json:"product_code"`
			TotalSeats  int    `json:"total_seats"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.ProductCode != "LG-A" || body.TotalSeats <= 5 ||
			r.Header.Get("Content-Type") != "application/json" {
			f.t.Errorf("seats: body %+v (%v), Content-Type %q", body, err, r.Header.Get("Content-Type"))
		}
		f.mu.Lock()
		v, ok := f.versions[parts[2]]
		ifMatch := r.Header.Get("If-Match")
		if !ok || ifMatch != `"`+strconv.FormatInt(v, 10)+`"` {
			f.mu.Unlock()
			f.t.Errorf("seats on %s: If-Match %q, the quote is at version %d", parts[2], ifMatch, v)
			http.Error(w, `{"code":"precondition_failed"}`, http.StatusPreconditionFailed)
			return
		}
		f.versions[parts[2]] = v + 1
		f.mu.Unlock()
		f.seats.Add(1)
		w.Header().Set("ETag", `"`+strconv.FormatInt(v+1, 10)+`"`)
		fmt.Fprint(w, `{"status":"draft"}`)
	default:
		f.t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	}
}

func startFake(t *testing.T, f *fakeServe) *httptest.Server {
	t.Helper()
	f.t, f.versions = t, map[string]int64{}
	srv := httptest.NewUnstartedServer(f)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestRunCommandsOnly(t *testing.T) {
	t.Parallel()
	f := &fakeServe{}
	srv := startFake(t, f)
	data, err := Generate(3, 8, 4)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(t.Context(), Config{Target: srv.URL, Data: data, Requests: 300, CommandsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total.Requests != 300 || rep.Total.OK != 300 || rep.Total.Errors != 0 || rep.Abandoned != 0 {
		t.Fatalf("report: %+v, abandoned %d, first error %q; want 300 requests, all OK", rep.Total, rep.Abandoned, rep.FirstError)
	}
	opens, seats := rep.Kinds[KindOpen.String()].OK, rep.Kinds[KindSeats.String()].OK
	if opens+seats != 300 || int64(seats) != f.seats.Load() || seats < 250 {
		t.Errorf("opens %d + raises %d (the server answered %d raises); want 300, each quote raised up to %d times",
			opens, seats, f.seats.Load(), RaisesPerQuote)
	}
	// The waiting and the prefetch take at most one connection per user,
	// and the measured requests one each of their own.
	if n := f.conns.Load(); n > 8 {
		t.Errorf("%d connections for 4 users, want at most 8: kept alive", n)
	}
}

func TestRunCutOffCountsAbandoned(t *testing.T) {
	t.Parallel()
	f := &fakeServe{hang: true}
	srv := startFake(t, f)
	data, err := Generate(3, 8, 4)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel) // Ctrl-C
	start := time.Now()
	rep, err := Run(ctx, Config{Target: srv.URL, Data: data, Duration: time.Minute, CommandsOnly: true,
		Grace: 200 * time.Millisecond, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the run took %s after its interruption", d)
	}
	// Each user opened a quote on each of its two customers, then hung on
	// its first raise until cut off.
	if !rep.Interrupted || rep.Abandoned != 4 || rep.Total.Errors != 0 || rep.Kinds[KindOpen.String()].OK != 8 {
		t.Errorf("interrupted %v, abandoned %d, %+v, opens %d; want interrupted, 4 abandoned, no errors, 8 opens",
			rep.Interrupted, rep.Abandoned, rep.Total, rep.Kinds[KindOpen.String()].OK)
	}
}
