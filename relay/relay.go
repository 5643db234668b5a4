// Package relay publishes the event log to downstream consumers: the log is
// the outbox. A Relay follows the log with the core's (transaction_id,
// position) cursor, publishes each batch through a Watermill
// message.Publisher, then moves its checkpoint. So nothing is published
// that was not committed (the log is read below the oldest open
// transaction), nothing committed is left out, each stream's events go out
// in version order, and a relay that dies between publishing and
// checkpointing publishes that batch again: delivery is at least once, and
// consumers de-duplicate on the message UUID, which is the event id.
//
// One relay per transport leads at a time, under a session advisory lock;
// the others stand by and take over when the leader's connection ends.
package relay

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/projections"
)

// Relay publishes the log to one transport.
type Relay struct {
	runner *projections.Runner
	name   string
}

// Options tune a Relay; the zero value is the default.
type Options struct {
	// BatchSize is how many events one publish carries (default 500).
	BatchSize int
	// OnPublished, when set, is told how many events each checkpointed
	// batch published (for metrics).
	OnPublished func(n int)
	// AfterPublish, when set, runs after a batch is published and before
	// its checkpoint is stored: an error there leaves the checkpoint where
	// it was, as a crash would. For tests.
	AfterPublish func(ctx context.Context, events []eventstore.Event) error
}

// New returns a relay of the log on pool to pub, a publisher of transport
// t, publishing to t.Topic.
func New(pool *pgxpool.Pool, t Transport, pub message.Publisher, log *slog.Logger, opts Options) *Relay {
	s := &sink{name: t.CheckpointName(), topic: t.Topic, pub: pub, after: opts.AfterPublish}
	r := projections.NewRunner(pool, s, log.With("relay", t.String()))
	if opts.BatchSize > 0 {
		r.BatchSize = opts.BatchSize
	}
	r.OnBatch = opts.OnPublished
	return &Relay{runner: r, name: s.name}
}

// Name is the relay's checkpoint name (relay.postgres, relay.nats).
func (r *Relay) Name() string { return r.name }

// Run publishes until ctx ends, then returns nil. Failures (the database or
// the broker gone) are logged and retried from the last checkpoint.
func (r *Relay) Run(ctx context.Context) error { return r.runner.Run(ctx) }

// Lag is how far the relay of transport t is behind the log.
func Lag(ctx context.Context, db eventstore.DBTX, t Transport) (projections.LagReport, error) {
	return projections.Lag(ctx, db, t.CheckpointName())
}

// Checkpoint is where the relay of transport t is in the log.
func Checkpoint(ctx context.Context, db eventstore.DBTX, t Transport) (eventstore.Cursor, error) {
	return projections.Checkpoint(ctx, db, t.CheckpointName())
}

// sink is the relay as a projection: the Runner gives it batches in log
// order inside the transaction that then stores the checkpoint.
type sink struct {
	name  string
	topic string
	pub   message.Publisher
	after func(ctx context.Context, events []eventstore.Event) error
}

func (s *sink) Name() string  { return s.name }
func (s *sink) Table() string { return "events" } // it writes no table
func (s *sink) Async() bool   { return true }

func (s *sink) Apply(ctx context.Context, _ pgx.Tx, _ pgx.Identifier, events []eventstore.Event) error {
	msgs := make([]*message.Message, len(events))
	for i, e := range events {
		m, err := NewMessage(e)
		if err != nil {
			return err
		}
		msgs[i] = m
	}
	if err := s.pub.Publish(s.topic, msgs...); err != nil {
		return fmt.Errorf("publish %d events from %s: %w", len(events), eventstore.Cursor{TransactionID: events[0].TransactionID, Position: events[0].Position}, err)
	}
	if s.after != nil {
		return s.after(ctx, events)
	}
	return nil
}
