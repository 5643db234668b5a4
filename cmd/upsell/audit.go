package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/audit"
	"github.com/upsell-dev/upsell/eventstore"
)

// cmdAudit is the auditor's command line: a quote's history in words (its
// state at a version or a time with --as-of), or the verification of the
// events' hash chains (audit verify). It reads across MSPs: an operator
// tool with database access, so it needs no API key.
func cmdAudit(ctx context.Context, c *cli, args []string) error {
	if len(args) > 0 && args[0] == "verify" {
		return cmdAuditVerify(ctx, c, args[1:])
	}
	fs := c.flags("audit")
	asOf := fs.String("as-of", "", "show the history up to `TIME|VERSION` (an RFC 3339 time, or a version number) and the quote's state then")
	asJSON := fs.Bool("json", false, "print JSON: the events (as GET /v1/change-quotes/{id}/events, with hash and change) and, with --as-of, the state")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: upsell audit QUOTE_ID [--as-of TIME|VERSION] [--json]\n       upsell audit verify [QUOTE_ID|--all]\n")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: upsell audit QUOTE_ID [--as-of TIME|VERSION] [--json], or upsell audit verify [QUOTE_ID|--all]"}
	}
	id, err := quoteID(pos[0])
	if err != nil {
		return err
	}
	var at *audit.AsOf
	if *asOf != "" {
		a, err := audit.ParseAsOf(*asOf)
		if err != nil {
			return usageError{err.Error()}
		}
		at = &a
	}
	pool, err := c.connectCurrent(ctx)
	if err != nil {
		return err
	}
	h, err := audit.Load(ctx, pool, id, at)
	if err != nil {
		return err
	}
	if *asJSON {
		return audit.WriteJSON(c.stdout, h)
	}
	return audit.WriteText(c.stdout, h)
}

func cmdAuditVerify(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("audit verify")
	all := fs.Bool("all", false, "verify every stream of the log (progress on standard error)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: upsell audit verify [QUOTE_ID|--all]\n")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *all == (len(pos) == 1) || len(pos) > 1 {
		return usageError{"usage: upsell audit verify QUOTE_ID, or upsell audit verify --all"}
	}
	var id uuid.UUID
	if !*all {
		if id, err = quoteID(pos[0]); err != nil {
			return err
		}
	}
	pool, err := c.connectCurrent(ctx)
	if err != nil {
		return err
	}
	var stats eventstore.ChainStats
	if *all {
		progress := audit.NewProgress(c.stderr)
		progress.Start()
		stats, err = audit.VerifyAll(ctx, pool, progress)
	} else {
		stats, err = audit.VerifyQuote(ctx, pool, id)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "ok: %d events in %d streams verified\n", stats.Events, stats.Streams)
	return nil
}

// quoteID reads a quote id; anything but a UUID is misuse.
func quoteID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, usageError{fmt.Sprintf("%q is not a quote id (a UUID)", s)}
	}
	return id, nil
}

// parseInterspersed parses flags given before, between and after the
// positional arguments (`audit ID --json` as well as `audit --json ID`),
// and returns the positional ones; after "--" every argument is one.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
