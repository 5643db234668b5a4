package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/projections"
)

// followerStatus is one reader of the log: a projector or a relay.
type followerStatus struct {
	Name          string    `json:"name"`
	Kind          string    `json:"kind"` // projection or relay
	Checkpoint    string    `json:"checkpoint"`
	LagEvents     int64     `json:"lag_events"`
	LagSeconds    float64   `json:"lag_seconds"`
	LastMovedAt   time.Time `json:"last_moved_at"` // zero: never ran
	LeaderRunning bool      `json:"leader_running"`
}

type statusReport struct {
	Head      string           `json:"head"`
	Events    int64            `json:"events"`
	Followers []followerStatus `json:"followers"`
	Stall     stallStatus      `json:"stall"`
	// LogAhead: transaction ids stored ahead of the server's (a restore
	// from another cluster); `upsell rebaseline` repairs it.
	LogAhead aheadStatus `json:"log_ahead"`
}

type aheadStatus struct {
	Ahead   bool                 `json:"ahead"`
	Summary string               `json:"summary"` // the text output's line after "log: " or "log AHEAD: "
	Max     eventstore.AheadInfo `json:"transaction_ids"`
}

// stallStatus is whether the readers of the log wait behind an open
// transaction (eventstore.Stall).
type stallStatus struct {
	Stalled             bool    `json:"stalled"`
	StalledAfterSeconds float64 `json:"stalled_after_seconds"`
	// Horizon: readers read the events of transactions below this id.
	Horizon          uint64 `json:"horizon"`
	UnreadableEvents int64  `json:"unreadable_events"` // at most 100,000 counted
	FirstUnreadable  string `json:"first_unreadable"`  // cursor; "" when none
	// Transaction is the oldest open transaction on the server, the one
	// the horizon waits for; null when none is open.
	Transaction *stallTransaction `json:"transaction"`
	Summary     string            `json:"summary"` // the text output's line after "log: " or "log STALLED: "
}

type stallTransaction struct {
	PID             int32     `json:"pid"` // 0 for a prepared transaction
	Database        string    `json:"database"`
	SameDatabase    bool      `json:"same_database"`
	ApplicationName string    `json:"application_name"`
	User            string    `json:"user"`
	State           string    `json:"state"` // pg_stat_activity's, "prepared", or "" when not visible to this role
	TransactionID   uint64    `json:"transaction_id"`
	BackendXmin     uint32    `json:"backend_xmin"`
	Started         time.Time `json:"started"` // zero when not visible to this role
	OpenSeconds     float64   `json:"open_seconds"`
	StateSeconds    float64   `json:"state_seconds"`
	GID             string    `json:"gid,omitempty"`
	EndsBy          string    `json:"ends_by"`
}

func newStallStatus(s eventstore.StallInfo) stallStatus {
	r := stallStatus{
		Stalled: s.Stalled, StalledAfterSeconds: s.Threshold.Seconds(), Horizon: s.Horizon,
		UnreadableEvents: s.UnreadableEvents, Summary: s.String(),
	}
	if s.UnreadableEvents > 0 {
		r.FirstUnreadable = s.FirstUnreadable.String()
	}
	if h := s.Holder; h != nil {
		r.Transaction = &stallTransaction{
			PID: h.PID, Database: h.Database, SameDatabase: h.SameDatabase, ApplicationName: h.ApplicationName,
			User: h.User, State: h.State, TransactionID: h.TransactionID, BackendXmin: h.BackendXmin,
			Started: h.Started, OpenSeconds: h.Open.Seconds(), StateSeconds: h.InState.Seconds(), GID: h.GID,
			EndsBy: h.EndsBy(),
		}
	}
	return r
}

// cmdStatus prints where the projectors and relays are in the log, how far
// behind they are, and whether the log is stalled behind an open
// transaction.
func cmdStatus(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("status")
	asJSON := fs.Bool("json", false, "print JSON")
	stallAfter := fs.Duration("stall-after", eventstore.StallThreshold,
		"call the log stalled when events wait behind a transaction open this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"status takes no arguments"}
	}
	if *stallAfter < 0 {
		return usageError{fmt.Sprintf("--stall-after %s: want a duration of 0 or more", *stallAfter)}
	}
	pool, err := c.connectCurrentAhead(ctx)
	if err != nil {
		return err
	}
	ahead, err := eventstore.Ahead(ctx, pool)
	if err != nil {
		return err
	}
	head, err := eventstore.New(pool).Head(ctx)
	if err != nil {
		return err
	}
	r := statusReport{Head: head.String(), Followers: []followerStatus{}}
	// Counted below a million rows, else the planner's estimate: counting
	// millions of rows is not what a status is for.
	if err := pool.QueryRow(ctx, `SELECT CASE WHEN reltuples < 1000000 THEN (SELECT count(*) FROM events) ELSE reltuples::bigint END
FROM pg_class WHERE oid = 'events'::regclass`).Scan(&r.Events); err != nil {
		return fmt.Errorf("count events: %w", err)
	}
	// Every checkpoint, and those expected here that never ran: the
	// asynchronous projections and the relay of the configured transport.
	expected := []string{}
	for _, p := range projections.All() {
		if p.Async() {
			expected = append(expected, p.Name())
		}
	}
	if t, err := c.transport(""); err == nil {
		expected = append(expected, t.CheckpointName())
	}
	rows, err := pool.Query(ctx, `WITH names AS (SELECT unnest($1::text[]) AS name UNION SELECT name FROM projection_checkpoints)
SELECT n.name, c.updated_at,
    EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended('upsell.projection.' || n.name, 0))
FROM names n LEFT JOIN projection_checkpoints c USING (name) ORDER BY n.name`, expected)
	if err != nil {
		return fmt.Errorf("read checkpoints: %w", err)
	}
	for rows.Next() {
		var f followerStatus
		var moved *time.Time
		if err := rows.Scan(&f.Name, &moved, &f.LeaderRunning); err != nil {
			rows.Close()
			return err
		}
		if moved != nil {
			f.LastMovedAt = *moved
		}
		f.Kind = "projection"
		if strings.HasPrefix(f.Name, "relay.") {
			f.Kind = "relay"
		}
		r.Followers = append(r.Followers, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for i := range r.Followers {
		f := &r.Followers[i]
		at, err := projections.Checkpoint(ctx, pool, f.Name)
		if err != nil {
			return err
		}
		lag, err := projections.Lag(ctx, pool, f.Name)
		if err != nil {
			return err
		}
		f.Checkpoint, f.LagEvents, f.LagSeconds = at.String(), lag.Events, lag.Age.Seconds()
	}
	stall, err := eventstore.StallAfter(ctx, pool, *stallAfter)
	if err != nil {
		return err
	}
	r.Stall = newStallStatus(stall)
	r.LogAhead = aheadStatus{Ahead: ahead.Ahead(), Summary: ahead.String(), Max: ahead}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(c.stdout, "log head %s (about %d events)\n", r.Head, r.Events)
	if r.LogAhead.Ahead {
		fmt.Fprintf(c.stdout, "log AHEAD: %s: restored from another cluster? run `upsell rebaseline` before anything appends to or reads the log\n", r.LogAhead.Summary)
	}
	if stall.Stalled {
		fmt.Fprintf(c.stdout, "log STALLED: %s\n\n", r.Stall.Summary)
	} else {
		fmt.Fprintf(c.stdout, "log: %s\n\n", r.Stall.Summary)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tCHECKPOINT\tBEHIND (EVENTS)\tBEHIND (TIME)\tLAST MOVED\tLEADER")
	for _, f := range r.Followers {
		leader := "none running"
		if f.LeaderRunning {
			leader = "running"
		}
		moved := "never ran"
		if !f.LastMovedAt.IsZero() {
			moved = f.LastMovedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", f.Name, f.Kind, f.Checkpoint, f.LagEvents,
			(time.Duration(f.LagSeconds * float64(time.Second))).Round(time.Millisecond), moved, leader)
	}
	return tw.Flush()
}
