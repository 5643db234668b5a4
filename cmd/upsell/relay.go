package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/relay"
)

// publishHelp documents --publish, shared by relay, serve and billing-tail.
const publishHelp = "where events are published: `postgres` (the topic upsell_events in this database) or nats://HOST:PORT (JetStream); default $UPSELL_PUBLISH_URL, else postgres"

// transport reads --publish, falling back on UPSELL_PUBLISH_URL.
func (c *cli) transport(flagValue string) (relay.Transport, error) {
	if flagValue == "" {
		flagValue = c.getenv("UPSELL_PUBLISH_URL")
	}
	t, err := relay.ParseTransport(flagValue)
	if err != nil {
		return t, usageError{err.Error()}
	}
	return t, nil
}

func cmdRelay(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("relay")
	publish := fs.String("publish", "", publishHelp)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"relay takes no arguments"}
	}
	t, err := c.transport(*publish)
	if err != nil {
		return err
	}
	pool, err := c.connectCurrent(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "upsell: relaying the event log to %s (Ctrl-C to stop)\n", t)
	runRelay(ctx, pool, t, c, relay.Options{})
	c.log.Info("relay stopped")
	return nil
}

// runRelay publishes the log to t until ctx ends. The broker may be down
// when it starts, or go away later: it keeps trying, so that the API of
// serve never depends on the broker.
func runRelay(ctx context.Context, pool *pgxpool.Pool, t relay.Transport, c *cli, opts relay.Options) {
	for {
		pub, closeConn, err := t.Publisher(ctx, pool, c.log)
		if err == nil {
			r := relay.New(pool, t, pub, c.log, opts)
			c.log.Info("relay starting", "transport", t.String(), "checkpoint", r.Name())
			_ = r.Run(ctx)
			_ = pub.Close()
			closeConn()
			return
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Error("relay cannot open its transport; trying again in 5s", "transport", t.String(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}
