package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/loadgen"
)

const loadgenUsage = `Usage: upsell loadgen [flags]

Drives a running server (upsell serve) over HTTP as MSP staff do: --users
virtual users at once, each on customers of its own, open change quotes,
raise seats, add products, preview, then save and leave the quote or review,
acknowledge and submit it. The data is loadgen's own (MSP lg-<seed>, products
LG-…), generated from --seed and imported through DATABASE_URL, which must be
the server's database; importing it again changes nothing. Its API keys
follow from the seed: never point loadgen at a production database.

The report (stdout) gives, per request kind, the requests, their outcome
(ok, refused as the flow expects, error), throughput and p50/p95/p99/max
latency, then the answers other than 2xx by kind, status and code. Progress
goes to stderr. Ctrl-C ends the run early and still reports. Exit code 1
when a request failed.

Flags:
`

func cmdLoadgen(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("loadgen")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), loadgenUsage)
		fs.PrintDefaults()
	}
	target := fs.String("target", "http://127.0.0.1:8080", "the server's base `URL`")
	users := fs.Int("users", 16, "concurrent virtual users (one API key each)")
	customers := fs.Int("customers", 1000, "customers to generate, split among the users")
	duration := fs.Duration("duration", 0, "how long to run (default 30s, unless --requests is given)")
	requests := fs.Int64("requests", 0, "stop after this many requests (over all users)")
	rate := fs.Float64("rate", 0, "at most this many requests per second over all users (0: as fast as the server answers)")
	commandsOnly := fs.Bool("commands-only", false, "send only commands that append one event each: open quotes and raise seats on them")
	submitRatio := fs.Float64("submit-ratio", 0.5, "share of the mix's quotes carried to submit; the others are saved and left")
	seed := fs.Uint64("seed", 1, "seed of the generated data and of the users' choices")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on one request")
	progress := fs.Duration("progress", 5*time.Second, "interval of the progress lines on stderr (0: none)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	generate := fs.String("generate", "", "only write the generated import `file` (for `upsell import`) and exit")
	skipImport := fs.Bool("skip-import", false, "do not import the data (it was imported before, e.g. with --generate and upsell import); DATABASE_URL is then not needed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("loadgen takes no arguments (got %q); see upsell loadgen -h", fs.Arg(0))}
	}
	switch {
	case *users < 1 || *users > loadgen.MaxUsers:
		return usageError{fmt.Sprintf("--users must be between 1 and %d, not %d", loadgen.MaxUsers, *users)}
	case *customers < *users || *customers > loadgen.MaxCustomers:
		return usageError{fmt.Sprintf("--customers must be between --users (%d) and %d, not %d: each user works on customers of its own", *users, loadgen.MaxCustomers, *customers)}
	case *duration < 0:
		return usageError{fmt.Sprintf("--duration must be positive, not %s", *duration)}
	case *requests < 0:
		return usageError{fmt.Sprintf("--requests must be positive, not %d", *requests)}
	case *rate < 0:
		return usageError{fmt.Sprintf("--rate must be positive (or 0: no cap), not %g", *rate)}
	case *submitRatio < 0 || *submitRatio > 1:
		return usageError{fmt.Sprintf("--submit-ratio must be between 0 and 1, not %g", *submitRatio)}
	case *timeout <= 0:
		return usageError{fmt.Sprintf("--timeout must be positive, not %s", *timeout)}
	case *progress < 0:
		return usageError{fmt.Sprintf("--progress must be positive (or 0: none), not %s", *progress)}
	}
	if u, err := url.Parse(*target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Sprintf("--target must be an http:// or https:// URL with a host, not %q", *target)}
	}
	if *duration == 0 && *requests == 0 {
		*duration = 30 * time.Second
	}

	data, err := loadgen.Generate(*seed, *customers, *users)
	if err != nil {
		return usageError{err.Error()}
	}
	if *generate != "" {
		return writeImportFile(c, *generate, data)
	}
	if !*skipImport && c.getenv("DATABASE_URL") == "" {
		return errors.New("DATABASE_URL is not set: loadgen imports its data into the server's database through it " +
			"(or give --skip-import when the data was imported before)")
	}
	if err := loadgen.Check(ctx, *target); err != nil {
		return err
	}
	if !*skipImport {
		if err := importData(ctx, c, data); err != nil {
			return err
		}
	}

	limit := fmt.Sprintf("for %s", *duration)
	switch {
	case *requests > 0 && *duration > 0:
		limit = fmt.Sprintf("for %s or %d requests", *duration, *requests)
	case *requests > 0:
		limit = fmt.Sprintf("for %d requests", *requests)
	}
	mode := loadgen.ModeMix
	if *commandsOnly {
		mode = loadgen.ModeCommandsOnly
	}
	fmt.Fprintf(c.stderr, "loadgen: %s, %d users on %d customers of MSP %s, %s against %s\n",
		mode, *users, *customers, data.MSPID, limit, *target)
	rep, err := loadgen.Run(ctx, loadgen.Config{
		Target: *target, Data: data, Duration: *duration, Requests: *requests, Rate: *rate,
		CommandsOnly: *commandsOnly, SubmitRatio: *submitRatio, Timeout: *timeout,
		Progress: *progress, Log: c.stderr,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		err = rep.WriteJSON(c.stdout)
	} else {
		err = rep.WriteText(c.stdout)
	}
	if err != nil {
		return err
	}
	if rep.Total.Errors > 0 {
		return fmt.Errorf("%d of %d requests failed; the first: %s", rep.Total.Errors, rep.Total.Requests, rep.FirstError)
	}
	return nil
}

// importData imports the generated file through DATABASE_URL, then lets the
// pool go: the run itself needs only HTTP.
func importData(ctx context.Context, c *cli, data *loadgen.Data) error {
	pool, err := c.connectCurrent(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	rep, err := importer.Import(ctx, eventstore.New(pool), data.File, domain.SystemClock{})
	if err != nil {
		return fmt.Errorf("import the generated data: %w", err)
	}
	fmt.Fprintf(c.stderr, "loadgen: imported MSP %s in %s: users %s; products %s; customers %s\n",
		data.MSPID, time.Since(start).Round(time.Millisecond), rep.Users, rep.Products, rep.Customers)
	c.close()
	c.pool = nil
	return nil
}

func writeImportFile(c *cli, path string, data *loadgen.Data) error {
	b, err := json.MarshalIndent(data.File, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "wrote %s: MSP %s with %d users, %d products, %d customers (import it with `upsell import %s`, then run loadgen with the same --seed, --users and --customers and --skip-import)\n",
		path, data.MSPID, len(data.Users), len(data.File.Products), len(data.File.Customers), path)
	return nil
}
