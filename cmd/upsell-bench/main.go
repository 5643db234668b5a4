// Command upsell-bench is scripts/bench.sh's helper, not part of the
// service:
//
//	upsell-bench seedlog [--events N] [--customers N] [--workers N] [--interleave N] [--seed N]
//	    fill DATABASE_URL's migrated database with a realistic log
//	    (internal/benchtools.SeedLog), progress on stderr
//	upsell-bench rebuild-profile --cpuprofile FILE [NAME]
//	    rebuild every read model (or NAME) as `upsell rebuild` does
//	    (projections.Rebuild, the projections at once), under a CPU profile
//	upsell-bench freeport
//	    print a free TCP port on 127.0.0.1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/internal/benchtools"
	"github.com/upsell-dev/upsell/projections"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "upsell-bench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: upsell-bench seedlog [flags] | rebuild-profile --cpuprofile FILE [NAME] | freeport")
	}
	switch args[0] {
	case "freeport":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		fmt.Fprintln(stdout, port)
		return nil
	case "seedlog":
		return seedlog(ctx, args[1:], getenv, stdout, stderr)
	case "rebuild-profile":
		return rebuildProfile(ctx, args[1:], getenv, stdout, stderr)
	}
	return fmt.Errorf("unknown command %q (seedlog, rebuild-profile, freeport)", args[0])
}

func seedlog(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("upsell-bench seedlog", flag.ContinueOnError)
	fs.SetOutput(stderr)
	events := fs.Int64("events", 1_000_000, "least number of events the seeding appends")
	customers := fs.Int("customers", 100_000, "customers to onboard first")
	workers := fs.Int("workers", 8, "concurrent appenders")
	seed := fs.Uint64("seed", 2, "loadgen data seed (MSP lg-<seed>); not loadgen's own run seed")
	interleave := fs.Int("interleave", 64, "quotes in progress per worker, one command of each per transaction (1: each quote appended whole)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	url := getenv("DATABASE_URL")
	if url == "" {
		return errors.New("DATABASE_URL is not set")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.MaxConns = int32(*workers + 2)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	start := time.Now()
	last := start
	tty := false
	if f, ok := stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	rep, err := benchtools.SeedLog(ctx, pool, benchtools.SeedConfig{
		Seed: *seed, Customers: *customers, Events: *events, Workers: *workers, Interleave: *interleave,
		Progress: func(done, total int64) {
			t := time.Now()
			if !tty && done < total && t.Sub(last) < 5*time.Second {
				return
			}
			last = t
			end := "\n"
			if tty {
				end = "  \r"
			}
			fmt.Fprintf(stderr, "seedlog: %d/%d events (%.0f%%), %.0f events/s%s", done, total,
				100*float64(done)/float64(total), float64(done)/t.Sub(start).Seconds(), end)
		},
	})
	if tty {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seeded %d events: %d customers onboarded, %d quotes (%d submitted) in %s, %.0f events/s\n",
		rep.Events, rep.Customers, rep.Quotes, rep.Submitted, rep.Elapsed.Round(time.Millisecond), float64(rep.Events)/rep.Elapsed.Seconds())
	return nil
}

func rebuildProfile(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("upsell-bench rebuild-profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("cpuprofile", "", "write the CPU profile to `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 1 {
		return errors.New("usage: upsell-bench rebuild-profile --cpuprofile FILE [NAME]")
	}
	todo := projections.All()
	if fs.NArg() == 1 {
		p, err := projections.ByName(fs.Arg(0))
		if err != nil {
			return err
		}
		todo = []projections.Projection{p}
	}
	url := getenv("DATABASE_URL")
	if url == "" {
		return errors.New("DATABASE_URL is not set")
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	// At once, as `upsell rebuild` runs them.
	reports := make([]string, len(todo))
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, p := range todo {
		wg.Go(func() {
			start := time.Now()
			var events int64
			if errs[i] = projections.Rebuild(ctx, pool, p, func(done, _ int64) { events = done }); errs[i] != nil {
				return
			}
			reports[i] = fmt.Sprintf("rebuild %s: %d events in %s, %.0f events/s\n", p.Name(), events,
				time.Since(start).Round(time.Millisecond), float64(events)/time.Since(start).Seconds())
		})
	}
	wg.Wait()
	for _, r := range reports {
		fmt.Fprint(stdout, r)
	}
	return errors.Join(errs...)
}
