package main

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestAPITimeouts: serve's timeouts are all set, and newAPIServer puts
// each where it belongs.
func TestAPITimeouts(t *testing.T) {
	t.Parallel()
	tt := apiTimeouts
	if tt.ReadHeader <= 0 || tt.Read <= 0 || tt.Write <= 0 || tt.Idle <= 0 {
		t.Fatalf("a timeout is not set: %+v", tt)
	}
	if tt.ReadHeader > tt.Read {
		t.Errorf("ReadHeader %s is longer than Read %s", tt.ReadHeader, tt.Read)
	}
	srv := newAPIServer(http.NotFoundHandler(), tt, slog.New(slog.DiscardHandler))
	if srv.ReadHeaderTimeout != tt.ReadHeader || srv.ReadTimeout != tt.Read || srv.WriteTimeout != tt.Write || srv.IdleTimeout != tt.Idle {
		t.Errorf("server timeouts %s %s %s %s, want %+v", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, tt)
	}
	if srv.ErrorLog == nil {
		t.Error("the server's own errors are not logged through the log")
	}
}

// testTimeouts are short enough for a test; only the numbers differ from
// serve's.
var testTimeouts = serverTimeouts{
	ReadHeader: 300 * time.Millisecond,
	Read:       600 * time.Millisecond,
	Write:      5 * time.Second,
	Idle:       400 * time.Millisecond,
}

// timedServer serves h as newAPIServer builds it, with testTimeouts, on a
// port of the loopback, and returns its address.
func timedServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newAPIServer(h, testTimeouts, slog.New(slog.DiscardHandler))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// closedByPeer reports whether err is what a client reads from a
// connection that the server closed.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// TestSlowlorisIsCutOff: a client that sends its headers a byte at a time,
// never finishing them, is disconnected once ReadHeaderTimeout is over,
// although it never stops sending; the handler never sees it. A client
// that sends its request at once is served meanwhile.
func TestSlowlorisIsCutOff(t *testing.T) {
	t.Parallel()
	var reached atomic.Int32
	addr := timedServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /v1/customers HTTP/1.1\r\nHost: upsell\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	// One byte every 20 ms, until the server hangs up (or 10 s, when the
	// test has failed anyway).
	var lastByte atomic.Int64 // ns after start
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{'a'}); err != nil || time.Since(start) > 10*time.Second {
				return
			}
			lastByte.Store(int64(time.Since(start)))
		}
	}()

	// Meanwhile, a whole request is answered.
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("a plain request beside the slow one: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || reached.Load() != 1 {
		t.Fatalf("a plain request beside the slow one: %d, handler reached %d times", resp.StatusCode, reached.Load())
	}

	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(make([]byte, 512))
	cut := time.Since(start)
	close(done)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("the slow client was still connected after 10 s (ReadHeaderTimeout %s)", testTimeouts.ReadHeader)
	case n > 0 || !closedByPeer(err):
		t.Fatalf("the slow client read %d bytes, %v; want the connection closed without an answer", n, err)
	}
	if cut < testTimeouts.ReadHeader-50*time.Millisecond || cut > testTimeouts.ReadHeader+3*time.Second {
		t.Errorf("cut off after %s, want about ReadHeaderTimeout (%s)", cut, testTimeouts.ReadHeader)
	}
	// It was cut off while still sending, not for being idle.
	if last := time.Duration(lastByte.Load()); last < testTimeouts.ReadHeader/2 {
		t.Errorf("the client's last byte went at %s: it was not sending when cut off at %s", last, cut)
	}
	if reached.Load() != 1 {
		t.Errorf("the handler saw the slow request (%d calls)", reached.Load())
	}
}

// TestSlowBodyIsCutOff: a client that sends its headers at once and then
// trickles its body cannot keep the handler reading past ReadTimeout.
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	readErr := make(chan error, 1)
	addr := timedServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
		w.WriteHeader(http.StatusNoContent)
	}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "PUT /v1/change-quotes/q/seats HTTP/1.1\r\nHost: upsell\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{' '}); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("the handler read the whole slow body")
		}
		if took := time.Since(start); took > testTimeouts.Read+3*time.Second {
			t.Errorf("the body's read failed after %s, want about ReadTimeout (%s)", took, testTimeouts.Read)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the handler was still reading the slow body after 10 s (ReadTimeout %s)", testTimeouts.Read)
	}
}

// TestIdleConnectionIsClosed: a kept-alive connection that sends no next
// request is closed once IdleTimeout is over.
func TestIdleConnectionIsClosed(t *testing.T) {
	t.Parallel()
	addr := timedServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: upsell\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || strings.EqualFold(resp.Header.Get("Connection"), "close") {
		t.Fatalf("first answer: %d, Connection %q; want 204 kept alive", resp.StatusCode, resp.Header.Get("Connection"))
	}
	answered := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := br.Read(make([]byte, 1))
	idle := time.Since(answered)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("the idle connection was still open after 10 s (IdleTimeout %s)", testTimeouts.Idle)
	case n > 0 || !closedByPeer(err):
		t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
	}
	if idle < testTimeouts.Idle-50*time.Millisecond {
		t.Errorf("closed after %s idle, before IdleTimeout (%s)", idle, testTimeouts.Idle)
	}
}
