// Command upsell is the Upsell service and its tools: one binary with
// subcommands. Configuration comes from flags and the environment
// (DATABASE_URL); logs go to standard error through log/slog.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/migrations"
)

const usage = `upsell: change orders for MSP partner portals, event-sourced on PostgreSQL.

Usage:
  upsell migrate            apply the database migrations
  upsell import FILE.json   load MSPs, users, the catalog and customers
  upsell demo               run the seed story (Contoso Ltd, 682 -> 700 seats)
  upsell serve [--addr HOST:PORT]
                            serve the HTTP API (default 127.0.0.1:8080) and run
                            the projectors
  upsell rebuild [NAME]     rebuild read models from the events (all, or one of:
                            quotes, customers) without stopping the API
  upsell relay              publish the event log to the message transport
                            (serve runs it too); --publish URL
  upsell billing-tail [--from-start]
                            follow submitted orders as downstream billing does
  upsell status             projector and relay positions and lag
  upsell audit QUOTE_ID [--as-of TIME|VERSION] [--json]
                            a quote's history, or its state at a time or version
  upsell audit verify [QUOTE_ID|--all]
                            check the events' hash chains; exit 1 naming the
                            first event that was edited, deleted or reordered
  upsell loadgen [flags]    drive a running server as MSP staff do; report
                            throughput, latency percentiles and errors
  upsell rebaseline [--dry-run]
                            after restoring a dump into another cluster: map
                            the log's transaction ids below this server's,
                            keeping every reader's place (docs/restore.md)

Environment:
  DATABASE_URL        PostgreSQL connection URL (required), e.g.
                      postgres://postgres@127.0.0.1:5432/upsell?sslmode=disable
  UPSELL_PUBLISH_URL  where the relay publishes and billing-tail reads: empty or
                      postgres (the topic upsell_events in DATABASE_URL's
                      database, the default), or nats://HOST:PORT (JetStream)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// env is where configuration is read from (os.Getenv, or a map in tests).
type env func(string) string

// run executes one subcommand and returns the process exit code: 0 done,
// 1 failed, 2 misused.
func run(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmds := map[string]func(context.Context, *cli, []string) error{
		"migrate":      cmdMigrate,
		"import":       cmdImport,
		"demo":         cmdDemo,
		"serve":        cmdServe,
		"rebuild":      cmdRebuild,
		"relay":        cmdRelay,
		"billing-tail": cmdBillingTail,
		"status":       cmdStatus,
		"audit":        cmdAudit,
		"loadgen":      cmdLoadgen,
		"rebaseline":   cmdRebaseline,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "upsell: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	c := &cli{getenv: getenv, stdout: stdout, stderr: stderr, log: log}
	defer c.close()
	err := cmd(ctx, c, args[1:])
	var ue usageError
	var fe flagError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &fe):
		return 2 // the flag package has said what is wrong
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "upsell %s: %v\n", args[0], err)
		return 2
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintf(stderr, "upsell %s: %v\n", args[0], err)
		return 1
	}
}

// usageError is a command line the command cannot act on.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// cli is what every subcommand shares: output, logs and (lazily) the pool.
type cli struct {
	getenv         env
	stdout, stderr io.Writer
	log            *slog.Logger
	pool           *pgxpool.Pool
}

// flagError is a command line the flag package refused and explained.
type flagError struct{ error }

// parseFlags parses a subcommand's flags; a refusal is misuse (exit 2).
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return flagError{err}
	}
	return err
}

func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("upsell "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	return fs
}

// connect opens the pool on DATABASE_URL and checks that it answers.
func (c *cli) connect(ctx context.Context) (*pgxpool.Pool, error) {
	if c.pool != nil {
		return c.pool, nil
	}
	url := c.getenv("DATABASE_URL")
	if url == "" {
		return nil, errors.New("DATABASE_URL is not set: set it to a PostgreSQL URL, " +
			"or use `make run`, which finds or starts a server and sets it")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "upsell"
	// A transaction left open stalls every reader of the event log (they
	// read only below the oldest open transaction): end abandoned ones.
	idle, err := envDuration(c.getenv, "UPSELL_DB_IDLE_TX_TIMEOUT", time.Minute)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(idle.Milliseconds(), 10)
	// A projector's lock is held by its connection: when the leader's host
	// vanishes, the server must notice within a minute, not the kernel's
	// two hours, so that a standby takes over.
	cfg.ConnConfig.RuntimeParams["tcp_keepalives_idle"] = "30"
	cfg.ConnConfig.RuntimeParams["tcp_keepalives_interval"] = "10"
	cfg.ConnConfig.RuntimeParams["tcp_keepalives_count"] = "3"
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	// A command waits on the database for most of its time (round trips),
	// so more connections than CPUs serve more at once: pgxpool's default
	// (the number of CPUs, at least 4) is raised unless the URL says
	// pool_max_conns.
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = defaultPoolSize
	}
	// A pooled connection idle for a second or more is pinged before it is
	// handed out. One that does not answer in time (the database or the
	// network went away without closing it) is dropped and the next one
	// tried, instead of holding its user until that user's deadline, or
	// forever for a user without one (the relay's SQL publisher).
	cfg.PingTimeout = 2 * time.Second
	// No statement_timeout: a request's statements end with its deadline
	// (pgx closes the connection and has the server cancel the statement),
	// and this pool also runs what may rightly take long (migrations,
	// imports, rebuilds; the projectors bound their own work).
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL at %s does not answer: %w", cfg.ConnConfig.Host, err)
	}
	c.pool = pool
	return pool, nil
}

// connectCurrent is connect for commands that need the schema as this
// binary knows it: pending migrations are refused, naming the fix.
func (c *cli) connectCurrent(ctx context.Context) (*pgxpool.Pool, error) {
	pool, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	pending, err := migrations.Pending(ctx, pool)
	if err != nil {
		return nil, err
	}
	if len(pending) > 0 {
		return nil, fmt.Errorf("the database schema is not current (pending: %s): run `upsell migrate` first", strings.Join(pending, ", "))
	}
	// A log restored from a cluster with higher transaction ids must be
	// rebaselined before anything appends to or reads it.
	if err := refuseAhead(ctx, pool); err != nil {
		return nil, err
	}
	return pool, nil
}

// defaultPoolSize is the pool's size when DATABASE_URL does not set
// pool_max_conns: 16 concurrent clients gave 12% more commands per second
// than with 4 connections (docs/performance.md).
const defaultPoolSize = 16

// envDuration reads a positive duration ("90s", "2m") from the environment
// variable name, or gives def when it is unset.
func envDuration(getenv env, name string, def time.Duration) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 90s or 2m", name, v)
	}
	return d, nil
}

func (c *cli) close() {
	if c.pool != nil {
		c.pool.Close()
	}
}
