package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/upsell-dev/upsell/migrations"
)

func cmdMigrate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("migrate")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"migrate takes no arguments"}
	}
	pool, err := c.connect(ctx)
	if err != nil {
		return err
	}
	applied, err := migrations.Apply(ctx, pool)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(c.stdout, "migrations: the schema is current; nothing to apply")
		return nil
	}
	fmt.Fprintf(c.stdout, "migrations: applied %s\n", strings.Join(applied, ", "))
	return nil
}
