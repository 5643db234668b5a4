package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/handlers"
)

// logAheadError refuses a command on a database whose stored transaction
// ids are ahead of the server's: restored from another cluster, not yet
// rebaselined.
type logAheadError struct{ info eventstore.AheadInfo }

func (e *logAheadError) Error() string {
	return "the event log holds transaction ids ahead of this server's (restored from another cluster?): " +
		"run `upsell rebaseline` before anything appends to or reads the log (" + e.info.String() + "; see docs/restore.md)"
}

// refuseAhead returns a *logAheadError when the log is ahead
// (eventstore.Ahead).
func refuseAhead(ctx context.Context, pool *pgxpool.Pool) error {
	info, err := eventstore.Ahead(ctx, pool)
	if err != nil {
		return err
	}
	if info.Ahead() {
		return &logAheadError{info}
	}
	return nil
}

// aheadReadiness is /readyz's check (ready): not ready while the log is
// ahead of the server.
func aheadReadiness(ctx context.Context, pool *pgxpool.Pool) error {
	err := refuseAhead(ctx, pool)
	if ahead := (*logAheadError)(nil); errors.As(err, &ahead) {
		return &handlers.ReadinessError{Reason: "the event log holds transaction ids ahead of this server's " +
			"(restored from another cluster?): run `upsell rebaseline`"}
	}
	return err
}

// cmdRebaseline maps a restored log's transaction ids below this server's,
// keeping every reader's place (eventstore.Rebaseline, docs/restore.md).
func cmdRebaseline(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("rebaseline")
	dryRun := fs.Bool("dry-run", false, "print what would change, change nothing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"rebaseline takes no arguments"}
	}
	pool, err := c.connectCurrentAhead(ctx)
	if err != nil {
		return err
	}
	r, err := eventstore.Rebaseline(ctx, pool, *dryRun)
	if err != nil {
		return err
	}
	printRebaseline(c, r)
	return nil
}

// connectCurrentAhead is connectCurrent for the commands that must run
// while the log is ahead of the server (status, which reports it, and
// rebaseline, which repairs it): pending migrations are still refused.
func (c *cli) connectCurrentAhead(ctx context.Context) (*pgxpool.Pool, error) {
	pool, err := c.connectCurrent(ctx)
	var ahead *logAheadError
	if errors.As(err, &ahead) {
		return c.pool, nil
	}
	return pool, err
}

func printRebaseline(c *cli, r eventstore.RebaselineReport) {
	w := c.stdout
	if !r.Changed() {
		fmt.Fprintf(w, "nothing to rebaseline: %s\n", r.Before)
		return
	}
	verb, moved := "rebaselined", "moved"
	if r.DryRun {
		verb, moved = "dry run, nothing changed; would rebaseline", "would move"
	}
	fmt.Fprintf(w, "%s\n", r.Before)
	fmt.Fprintf(w, "%s: %d events and %d topic messages to transaction id %d (the log's order becomes position order)\n",
		verb, r.Events, r.Messages, eventstore.BaselineTransactionID)
	if len(r.Moves) == 0 {
		fmt.Fprintln(w, "no checkpoint or consumer group to move")
	}
	for _, m := range r.Moves {
		unit := "position"
		if m.Kind == "consumer group" {
			unit = "offset"
		}
		fmt.Fprintf(w, "%s %s %s: %s -> %s (reads on after %s %d)\n", moved, m.Kind, m.Name, m.Before, m.After, unit, m.After.Position)
	}
}
