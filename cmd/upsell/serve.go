package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/app"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/handlers"
	"github.com/upsell-dev/upsell/migrations"
	"github.com/upsell-dev/upsell/projections"
	"github.com/upsell-dev/upsell/relay"
)

// newService is the application layer as every command of this binary uses
// it: quote read models are written in the append transaction, queued with
// the append itself (one round trip).
func newService(pool *pgxpool.Pool, opts ...app.Option) *app.Service {
	return app.New(pool, append([]app.Option{app.WithBatchHook(projections.InlineBatch),
		app.WithStoreOptions(projections.InlineMerges()...)}, opts...)...)
}

// defaultGroupCommit is serve's --group-commit: one group in flight per
// two CPUs. On a small machine shared with PostgreSQL, fewer and larger
// groups cost the database less per command (measured in
// docs/performance.md); a larger one needs more groups to use its cores.
func defaultGroupCommit() int { return max(1, runtime.NumCPU()/2) }

// serveGCPercent is the garbage collector's target for serve when GOGC is
// not set: a command's garbage is short-lived, and collecting at 400%
// instead of Go's 100% costs about 40 MB more of peak memory for about 10%
// more commands per second (docs/performance.md).
const serveGCPercent = 400

// shutdownGrace bounds how long requests in flight may take to finish.
const shutdownGrace = 20 * time.Second

func cmdServe(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("serve")
	addr := fs.String("addr", "127.0.0.1:8080", "`host:port` to listen on")
	keyTTL := fs.Duration("idempotency-ttl", handlers.DefaultIdempotencyTTL, "how long an Idempotency-Key's response is kept for replay")
	publish := fs.String("publish", "", publishHelp)
	pprofAddr := fs.String("pprof", "", "also serve net/http/pprof on `host:port` (e.g. 127.0.0.1:6060; keep it private)")
	rateLimit := fs.Float64("rate-limit", 0, "requests per second allowed to one API key (429 beyond it); 0: no limit")
	requestTimeout := fs.Duration("request-timeout", handlers.DefaultRequestTimeout, "bound on one request's work, its database calls included")
	quoteCache := fs.Int("quote-cache", app.DefaultQuoteCache, "change quotes kept in memory between commands (a few KB each); 0: none, every command reads its quote's events")
	groupCommit := fs.Int("group-commit", defaultGroupCommit(), "commands' transactions in flight at once, each carrying the commands that waited for it (group commit; default: one per two CPUs); 0: each command commits alone")
	groupSize := fs.Int("group-size", eventstore.DefaultGroupSize, "most commands in one group-commit transaction")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"serve takes no arguments"}
	}
	if *groupCommit < 0 {
		return usageError{fmt.Sprintf("--group-commit %d: must be 0 (off) or more", *groupCommit)}
	}
	if *groupSize < 1 {
		return usageError{fmt.Sprintf("--group-size %d: must be 1 or more", *groupSize)}
	}
	if *quoteCache < 0 {
		return usageError{fmt.Sprintf("--quote-cache %d: must be 0 (none) or more", *quoteCache)}
	}
	if *rateLimit < 0 {
		return usageError{fmt.Sprintf("--rate-limit %v: must be 0 (no limit) or more", *rateLimit)}
	}
	if *requestTimeout <= 0 {
		return usageError{fmt.Sprintf("--request-timeout %s: must be positive", *requestTimeout)}
	}
	if *keyTTL < time.Minute {
		return usageError{fmt.Sprintf("--idempotency-ttl %s is too short: keys must outlive a client's retries (at least 1m)", *keyTTL)}
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serveGCPercent)
	}
	transport, err := c.transport(*publish)
	if err != nil {
		return err
	}
	pool, err := c.connectCurrent(ctx)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if *pprofAddr != "" {
		stopPprof, err := servePprof(*pprofAddr, c)
		if err != nil {
			_ = ln.Close()
			return err
		}
		defer stopPprof()
	}
	metrics := handlers.NewMetrics(pool, transport.CheckpointName())
	var runners []*projections.Runner
	for _, p := range projections.All() {
		if p.Async() {
			runner := projections.NewRunner(pool, p, c.log)
			counter := metrics.ProjectedEvents.WithLabelValues(p.Name())
			runner.OnBatch = func(n int) { counter.Add(float64(n)) }
			runners = append(runners, runner)
		}
	}
	// API keys are resolved from memory while the cache's listener hears
	// of every change to users (migration 009), from the database when not.
	keys := handlers.NewKeyCache(pool, c.log)
	api := handlers.New(handlers.Config{
		Pool: pool, App: newService(pool, app.WithQuoteCache(*quoteCache), app.WithStoreOptions(eventstore.WithGroupCommit(*groupCommit, *groupSize), eventstore.OnGroup(metrics.ObserveGroup))), Queries: projections.NewQueries(pool), Log: c.log, Metrics: metrics,
		Ready:     func(ctx context.Context) error { return ready(ctx, pool) },
		RateLimit: *rateLimit, RequestTimeout: *requestTimeout, Keys: keys,
	})
	srv := newAPIServer(api, apiTimeouts, c.log)

	// The projectors run until the server has finished its last request.
	projCtx, stopProjectors := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProjectors()
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Go(func() { _ = r.Run(projCtx) })
	}
	wg.Go(func() { purgeIdempotencyKeys(projCtx, pool, *keyTTL, c) })
	// Like the projectors, the listener lasts until the last request is
	// answered: requests draining at shutdown still find their keys in
	// memory.
	wg.Go(func() { keys.Run(projCtx) })
	relayed := metrics.RelayedEvents.WithLabelValues(transport.Kind)
	wg.Go(func() {
		runRelay(projCtx, pool, transport, c, relay.Options{OnPublished: func(n int) { relayed.Add(float64(n)) }})
	})

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c.log.Info("serving", "addr", "http://"+ln.Addr().String())
	fmt.Fprintf(c.stdout, "upsell: serving the API on http://%s (Ctrl-C to stop)\n", ln.Addr())

	select {
	case err = <-served: // the listener failed
	case <-ctx.Done():
		c.log.Info("shutting down: finishing requests in flight")
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		err = srv.Shutdown(shutCtx)
		cancel()
		if err != nil {
			// The grace is over: close what is left, which cancels the
			// requests' contexts and so their queries.
			c.log.Warn("requests still running after the grace period; closing them", "grace", shutdownGrace)
			_ = srv.Close()
			err = fmt.Errorf("shut down: %w", err)
		}
	}
	stopProjectors()
	wg.Wait()
	c.log.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// servePprof serves the profiler on its own listener, apart from the API:
// profiles show internals and must not be reachable where the API is.
func servePprof(addr string, c *cli) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	c.log.Info("profiler listening", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	return func() { _ = srv.Close() }, nil
}

// ready is /readyz: the database answers and its schema is current.
func ready(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("the database does not answer: %w", err)
	}
	pending, err := migrations.Pending(ctx, pool)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		return &handlers.ReadinessError{Reason: "migrations pending: " + strings.Join(pending, ", ")}
	}
	return aheadReadiness(ctx, pool)
}

// purgeIdempotencyKeys deletes expired idempotency keys now and every hour
// until ctx ends. Every instance may do it; the deletes do not conflict.
func purgeIdempotencyKeys(ctx context.Context, pool *pgxpool.Pool, ttl time.Duration, c *cli) {
	for {
		// Bounded, so that a database that stops answering cannot hold the
		// purge, and the shutdown that waits for it, forever.
		purgeCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		n, err := handlers.PurgeIdempotencyKeys(purgeCtx, pool, ttl)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			c.log.Warn("purging idempotency keys failed; trying again in an hour", "err", err)
		case n > 0:
			c.log.Info("purged expired idempotency keys", "keys", n, "ttl", ttl)
		}
		t := time.NewTimer(time.Hour)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
