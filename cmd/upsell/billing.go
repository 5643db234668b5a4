package main

import (
	"context"
	"fmt"

	"github.com/upsell-dev/upsell/billing"
	"github.com/upsell-dev/upsell/relay"
)

// cmdBillingTail follows submitted orders as downstream billing would.
func cmdBillingTail(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("billing-tail")
	publish := fs.String("publish", "", publishHelp)
	fromStart := fs.Bool("from-start", false, "read the topic from its first message (else resume the group; a new group starts at the end)")
	group := fs.String("group", "billing-tail", "consumer group: keeps its position between runs")
	asJSON := fs.Bool("json", false, "one JSON object per order")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"billing-tail takes no arguments"}
	}
	if *group == "" {
		return usageError{"--group must not be empty"}
	}
	t, err := c.transport(*publish)
	if err != nil {
		return err
	}
	pool, err := c.connectCurrent(ctx)
	if err != nil {
		return err
	}
	sub, closeConn, err := t.Subscriber(ctx, pool, relay.SubscribeOptions{Group: *group, FromStart: *fromStart}, c.log)
	if err != nil {
		return err
	}
	defer closeConn()
	defer sub.Close()
	show := billing.Print
	if *asJSON {
		show = billing.PrintJSON
	}
	consumer := billing.NewConsumer(100_000, func(ctx context.Context, o billing.Order) error {
		return show(c.stdout, o)
	})
	from := "where group " + *group + " stopped"
	if *fromStart {
		from = "the first message"
	}
	fmt.Fprintf(c.stderr, "upsell: following submitted orders on %s from %s (Ctrl-C to stop)\n", t, from)
	return consumer.Run(ctx, sub, t.Topic)
}
