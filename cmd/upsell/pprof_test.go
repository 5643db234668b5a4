package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

var pprofLine = regexp.MustCompile(`msg="profiler listening" addr=(http://\S+)`)

// --pprof serves the profiler on a listener of its own, never on the API's.
func TestServeProfiler(t *testing.T) {
	t.Parallel()
	url := migratedURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--pprof", "127.0.0.1:0"}, envWith(url), stdout, stderr)
	}()
	defer func() {
		cancel()
		if code := <-exit; code != 0 {
			t.Errorf("serve exited %d; log:\n%s", code, stderr.String())
		}
	}()
	var profiler, api string
	for deadline := time.Now().Add(15 * time.Second); profiler == "" || api == ""; time.Sleep(10 * time.Millisecond) {
		if m := pprofLine.FindStringSubmatch(stderr.String()); m != nil {
			profiler = m[1]
		}
		if m := servingLine.FindStringSubmatch(stdout.String()); m != nil {
			api = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not announce both listeners within 15 s; stdout %q, log:\n%s", stdout.String(), stderr.String())
		}
	}
	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(profiler + "heap?debug=1"); code != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("GET %sheap?debug=1: %d %.80q, want the heap profile", profiler, code, body)
	}
	if code, _ := get(strings.TrimSuffix(api, "/") + "/debug/pprof/"); code != 404 {
		t.Errorf("the API serves /debug/pprof/ (%d): the profiler must stay on its own listener", code)
	}
}

// A --pprof address that cannot be listened on stops serve with the reason.
func TestServeProfilerBadAddress(t *testing.T) {
	t.Parallel()
	code, _, stderr := upsell(t, migratedURL(t), "serve", "--addr", "127.0.0.1:0", "--pprof", "not-an-address")
	if code != 1 || !strings.Contains(stderr, "--pprof") {
		t.Errorf("serve --pprof not-an-address: exit %d, stderr %q; want 1 naming --pprof", code, stderr)
	}
}
