package relay

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
)

// Topic is where the relay publishes every event: the watermill-sql topic
// (table watermill_upsell_events, made by migration 006) or the JetStream
// stream and subject of that name.
const Topic = "upsell_events"

// DedupWindow is how long JetStream remembers a message id to drop a
// republished copy (Nats-Msg-Id). A relay that restarts within it
// publishes no duplicate to NATS at all; past it consumers still
// de-duplicate on the message UUID.
const DedupWindow = 10 * time.Minute

// ErrBadTransport is a publish URL the relay cannot use.
var ErrBadTransport = errors.New("unknown message transport")

// Transport is where events are published and read back: the PostgreSQL
// topic in the service's own database (the default), or NATS JetStream.
type Transport struct {
	Kind string // "postgres" or "nats"
	URL  string // the NATS server URL; empty for postgres
	// Topic is the topic (Topic unless changed): for NATS the stream and
	// subject, which tests change to keep apart on one server. The SQL
	// topic's tables are made by a migration, so there it stays Topic.
	Topic string
}

// ParseTransport reads --publish / UPSELL_PUBLISH_URL: empty or "postgres"
// for the SQL topic, nats://HOST:PORT (or tls://) for JetStream.
func ParseTransport(s string) (Transport, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "postgres", "postgresql", "sql":
		return Transport{Kind: "postgres", Topic: Topic}, nil
	}
	u, err := url.Parse(s)
	if err == nil && (u.Scheme == "nats" || u.Scheme == "tls") && u.Host != "" {
		return Transport{Kind: "nats", URL: s, Topic: Topic}, nil
	}
	return Transport{}, fmt.Errorf(`%w %q: use "postgres" (the topic %s in the service's database, the default) or nats://HOST:PORT`, ErrBadTransport, redact(s), Topic)
}

// String names the transport for logs, without credentials.
func (t Transport) String() string {
	if t.Kind == "nats" {
		return "nats " + redact(t.URL) + " stream " + t.Topic
	}
	return "postgres topic " + t.Topic
}

// CheckpointName is the relay's key in projection_checkpoints and its lock:
// one per transport, so switching transports publishes the whole log to
// the new one.
func (t Transport) CheckpointName() string {
	if t.Topic != "" && t.Topic != Topic {
		return "relay." + t.Kind + "." + t.Topic
	}
	return "relay." + t.Kind
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// PublishTimeout bounds one publish to the SQL topic.
const PublishTimeout = 30 * time.Second

// boundedExec gives watermill-sql's publisher, which runs its INSERT
// without a deadline (context.Background), one: at most timeout, and no
// longer than the relay's own context. Without it a database that stops
// answering (a partition, not a refused connection) holds the relay, and
// the shutdown waiting on it, forever.
type boundedExec struct {
	*sql.DB
	ctx     context.Context
	timeout time.Duration
}

func (b boundedExec) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()
	return b.DB.ExecContext(ctx, query, args...)
}

// Publisher opens the transport's Watermill publisher. Close it, then the
// returned closer (the connection under it). The SQL publisher's inserts
// end with ctx.
func (t Transport) Publisher(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (message.Publisher, func(), error) {
	logger := watermill.NewSlogLogger(log)
	if t.Kind == "postgres" {
		if t.Topic != Topic {
			return nil, nil, fmt.Errorf("the SQL transport has one topic, %s", Topic)
		}
		db := stdlib.OpenDBFromPool(pool)
		pub, err := wsql.NewPublisher(boundedExec{db, ctx, PublishTimeout},
			wsql.PublisherConfig{SchemaAdapter: topicSchema{}}, logger)
		if err != nil {
			_ = db.Close()
			return nil, nil, fmt.Errorf("open the SQL publisher: %w", err)
		}
		return pub, func() { _ = db.Close() }, nil
	}
	conn, _, err := t.connect(ctx, "upsell relay")
	if err != nil {
		return nil, nil, err
	}
	pub, err := wnats.NewPublisherWithNatsConn(conn, wnats.PublisherPublishConfig{
		Marshaler:         &wnats.NATSMarshaler{},
		SubjectCalculator: wnats.DefaultSubjectCalculator,
		// The stream is made by connect; Nats-Msg-Id = message UUID = event id.
		JetStream: wnats.JetStreamConfig{TrackMsgId: true},
	}, logger)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("open the NATS publisher: %w", err)
	}
	return pub, conn.Close, nil
}

// connect dials NATS and makes sure the stream exists with its
// de-duplication window.
func (t Transport) connect(ctx context.Context, name string) (*nats.Conn, nats.JetStreamContext, error) {
	conn, err := nats.Connect(t.URL, nats.Name(name), nats.Timeout(5*time.Second),
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", redact(t.URL), err)
	}
	js, err := conn.JetStream()
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("NATS at %s: JetStream: %w", redact(t.URL), err)
	}
	if err := ensureStream(ctx, js, t.Topic); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("NATS at %s: %w (is the server started with JetStream, nats-server -js?)", redact(t.URL), err)
	}
	return conn, js, nil
}

func ensureStream(ctx context.Context, js nats.JetStreamManager, topic string) error {
	_, err := js.StreamInfo(topic, nats.Context(ctx))
	if err == nil {
		return nil
	}
	if !errors.Is(err, nats.ErrStreamNotFound) {
		return fmt.Errorf("look up stream %s: %w", topic, err)
	}
	_, err = js.AddStream(&nats.StreamConfig{
		Name:        topic,
		Description: "Upsell events, published by the relay (one message per event, id = event id)",
		Subjects:    []string{topic},
		Storage:     nats.FileStorage,
		Duplicates:  DedupWindow,
	}, nats.Context(ctx))
	if err != nil && !errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create stream %s: %w", topic, err)
	}
	return nil
}

// SubscribeOptions says where a consumer group starts.
type SubscribeOptions struct {
	// Group names the consumer group (SQL) or durable consumer (NATS); it
	// keeps its position across restarts.
	Group string
	// FromStart forgets the group's position and reads the topic from its
	// first message. Without it a group resumes where it stopped, and a
	// new group starts after the last message published so far.
	FromStart bool
}

// Subscriber opens a Watermill subscriber on the transport for one
// consumer group, positioned as opts say. Close it, then the closer.
func (t Transport) Subscriber(ctx context.Context, pool *pgxpool.Pool, opts SubscribeOptions, log *slog.Logger) (message.Subscriber, func(), error) {
	if opts.Group == "" {
		return nil, nil, errors.New("a consumer group is needed")
	}
	logger := watermill.NewSlogLogger(log)
	if t.Kind == "postgres" {
		if t.Topic != Topic {
			return nil, nil, fmt.Errorf("the SQL transport has one topic, %s", Topic)
		}
		if err := positionSQLGroup(ctx, pool, opts); err != nil {
			return nil, nil, err
		}
		db := stdlib.OpenDBFromPool(pool)
		sub, err := wsql.NewSubscriber(db, wsql.SubscriberConfig{
			ConsumerGroup:  opts.Group,
			SchemaAdapter:  wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: 100},
			OffsetsAdapter: wsql.DefaultPostgreSQLOffsetsAdapter{},
			PollInterval:   100 * time.Millisecond,
		}, logger)
		if err != nil {
			_ = db.Close()
			return nil, nil, fmt.Errorf("open the SQL subscriber: %w", err)
		}
		return sub, func() { _ = db.Close() }, nil
	}
	conn, js, err := t.connect(ctx, "upsell "+opts.Group)
	if err != nil {
		return nil, nil, err
	}
	// The durable consumer is made here and bound to, not left to the
	// subscription: nats.go deletes a consumer it created itself when the
	// subscription ends, and the group would lose its position.
	_, err = js.ConsumerInfo(t.Topic, opts.Group, nats.Context(ctx))
	exists := err == nil
	if err != nil && !errors.Is(err, nats.ErrConsumerNotFound) {
		conn.Close()
		return nil, nil, fmt.Errorf("NATS: look up consumer %s: %w", opts.Group, err)
	}
	if exists && opts.FromStart {
		if err := js.DeleteConsumer(t.Topic, opts.Group, nats.Context(ctx)); err != nil && !errors.Is(err, nats.ErrConsumerNotFound) {
			conn.Close()
			return nil, nil, fmt.Errorf("NATS: reset consumer %s: %w", opts.Group, err)
		}
		exists = false
	}
	if !exists {
		deliver := nats.DeliverNewPolicy
		if opts.FromStart {
			deliver = nats.DeliverAllPolicy
		}
		_, err := js.AddConsumer(t.Topic, &nats.ConsumerConfig{
			Durable:        opts.Group,
			Description:    "upsell consumer group " + opts.Group,
			DeliverSubject: nats.NewInbox(),
			DeliverPolicy:  deliver,
			AckPolicy:      nats.AckExplicitPolicy,
			AckWait:        30 * time.Second,
			// One message in flight: a redelivery can never overtake the
			// next message, so the stream's order holds.
			MaxAckPending: 1,
		}, nats.Context(ctx))
		if err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("NATS: create consumer %s: %w", opts.Group, err)
		}
	}
	subOpts := []nats.SubOpt{nats.Bind(t.Topic, opts.Group), nats.ManualAck()}
	sub, err := wnats.NewSubscriberWithNatsConn(conn, wnats.SubscriberSubscriptionConfig{
		Unmarshaler:      &wnats.NATSMarshaler{},
		SubscribersCount: 1, // one callback at a time keeps the stream's order
		AckWaitTimeout:   30 * time.Second,
		CloseTimeout:     5 * time.Second,
		// With DurablePrefix alone watermill-nats would bind to no stream;
		// with Bind the library uses the consumer and never deletes it.
		JetStream: wnats.JetStreamConfig{DurablePrefix: opts.Group, SubscribeOptions: subOpts},
	}, logger)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("open the NATS subscriber: %w", err)
	}
	return sub, conn.Close, nil
}

// positionSQLGroup makes the group's offsets row: at the start for
// FromStart, after the last message for a new group, unchanged otherwise.
func positionSQLGroup(ctx context.Context, pool *pgxpool.Pool, opts SubscribeOptions) error {
	var err error
	if opts.FromStart {
		_, err = pool.Exec(ctx, `INSERT INTO watermill_offsets_upsell_events (consumer_group, offset_acked, last_processed_transaction_id)
VALUES ($1, 0, '0') ON CONFLICT (consumer_group) DO UPDATE SET offset_acked = 0, last_processed_transaction_id = '0'`, opts.Group)
	} else {
		_, err = pool.Exec(ctx, `INSERT INTO watermill_offsets_upsell_events (consumer_group, offset_acked, last_processed_transaction_id)
SELECT $1, coalesce(last."offset", 0), coalesce(last.transaction_id, '0')
FROM (VALUES (1)) AS one
LEFT JOIN LATERAL (SELECT "offset", transaction_id FROM watermill_upsell_events
                   ORDER BY transaction_id DESC, "offset" DESC LIMIT 1) AS last ON true
ON CONFLICT (consumer_group) DO NOTHING`, opts.Group)
	}
	if err != nil {
		return fmt.Errorf("position consumer group %s: %w", opts.Group, err)
	}
	return nil
}
