package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// connServer is an HTTP server that counts the connections it accepted and
// answers as the path asks.
func connServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo": // what the request carried, as one line
			w.Header().Set("ETag", `"7"`)
			_, _ = io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" auth="+r.Header.Get("Authorization")+
				" if-match="+r.Header.Get("If-Match")+" type="+r.Header.Get("Content-Type")+" body="+string(body))
		case "/big": // more than net/http buffers: a chunked answer
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, strings.Repeat("x", 100_000))
		case "/close": // the server ends the connection after answering
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		default:
			http.Error(w, `{"code":"nope"}`, http.StatusNotFound)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// openConn is newConn's connection to url, closed at the test's end.
func openConn(t *testing.T, ctx context.Context, url string, timeout time.Duration) *conn {
	t.Helper()
	c, err := newConn(ctx, url, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

func TestConnKeepsOneConnection(t *testing.T) {
	t.Parallel()
	srv, conns := connServer(t)
	c := openConn(t, t.Context(), srv.URL, 5*time.Second)
	for i := range 50 {
		a, err := c.do(http.MethodPut, "/echo?x=1", "k1", []byte(`{"n":1}`), 42)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		want := `PUT /echo?x=1 auth=Bearer k1 if-match="42" type=application/json body={"n":1}`
		if a.status != http.StatusOK || a.etag != `"7"` || string(a.body) != want {
			t.Fatalf("request %d: got %d %q %q, want 200 \"7\" %q", i, a.status, a.etag, a.body, want)
		}
		a, err = c.do(http.MethodPost, "/echo", "k1", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := "POST /echo auth=Bearer k1 if-match= type= body="; string(a.body) != want {
			t.Fatalf("got %q, want %q", a.body, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("100 requests took %d connections, want 1 kept alive", n)
	}
}

func TestConnTargetPath(t *testing.T) {
	t.Parallel()
	srv, _ := connServer(t)
	// A target with a path (a server behind a prefix): every request's
	// path goes after it.
	mux := http.NewServeMux()
	mux.Handle("/api/", http.StripPrefix("/api", srv.Config.Handler))
	prefixed := httptest.NewServer(mux)
	t.Cleanup(prefixed.Close)
	c := openConn(t, t.Context(), prefixed.URL+"/api/", 5*time.Second)
	a, err := c.do(http.MethodGet, "/echo", "k", nil, 0)
	if err != nil || a.status != http.StatusOK || !strings.HasPrefix(string(a.body), "GET /echo ") {
		t.Fatalf("got %d %q %v, want 200 GET /echo", a.status, a.body, err)
	}
}

func TestConnAnswers(t *testing.T) {
	t.Parallel()
	srv, conns := connServer(t)
	c := openConn(t, t.Context(), srv.URL+"/", 5*time.Second)
	a, err := c.do(http.MethodGet, "/big", "k", nil, 0)
	if err != nil || a.status != http.StatusCreated || len(a.body) != 100_000 {
		t.Fatalf("chunked answer: %d, %d bytes, %v; want 201, 100000 bytes", a.status, len(a.body), err)
	}
	a, err = c.do(http.MethodGet, "/missing", "k", nil, 0)
	if err != nil || a.status != http.StatusNotFound || !strings.Contains(string(a.body), `"nope"`) {
		t.Fatalf("404: %d %q %v", a.status, a.body, err)
	}
	// Connection: close: the next request dials anew and succeeds.
	for range 3 {
		if a, err = c.do(http.MethodGet, "/close", "k", nil, 0); err != nil || string(a.body) != "bye" {
			t.Fatalf("close: %q %v", a.body, err)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("connections = %d, want 3: one until the first close, then one per closed answer", n)
	}
}

func TestConnIdleRedials(t *testing.T) {
	t.Parallel()
	srv, conns := connServer(t)
	c := openConn(t, t.Context(), srv.URL, 5*time.Second)
	if _, err := c.do(http.MethodGet, "/echo", "k", nil, 0); err != nil {
		t.Fatal(err)
	}
	c.lastUsed = time.Now().Add(-maxIdle - time.Second) // as if idle for long
	if _, err := c.do(http.MethodGet, "/echo", "k", nil, 0); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("connections = %d, want 2: a connection idle past maxIdle is not reused", n)
	}
}

func TestConnFailures(t *testing.T) {
	t.Parallel()
	srv, _ := connServer(t)

	t.Run("timeout", func(t *testing.T) {
		c := openConn(t, t.Context(), srv.URL, 100*time.Millisecond)
		_, err := c.do(http.MethodGet, "/slow", "k", nil, 0)
		if transportCode(err) != "timeout" {
			t.Fatalf("got %v (%s), want a timeout", err, transportCode(err))
		}
		if c.c != nil {
			t.Error("a failed connection is kept")
		}
	})
	t.Run("cut off", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		c := openConn(t, ctx, srv.URL, 10*time.Second)
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.do(http.MethodGet, "/slow", "k", nil, 0)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want the cut-off (context.Canceled)", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the cut-off took %s", d)
		}
		if _, err := c.do(http.MethodGet, "/echo", "k", nil, 0); !errors.Is(err, context.Canceled) {
			t.Errorf("after the cut-off: %v, want context.Canceled", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c, err := newConn(t.Context(), "http://"+addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.do(http.MethodGet, "/", "k", nil, 0); transportCode(err) != "connection_refused" {
			t.Fatalf("got %v (%s), want connection_refused", err, transportCode(err))
		}
	})
	t.Run("bad target", func(t *testing.T) {
		for _, u := range []string{"ftp://x", "http://", "::"} {
			if _, err := newConn(t.Context(), u, time.Second); err == nil {
				t.Errorf("newConn(%q) = nil error", u)
			}
		}
	})
}
