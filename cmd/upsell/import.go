package main

import (
	"context"
	"fmt"
	"os"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
)

func cmdImport(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("import")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"usage: upsell import FILE.json"}
	}
	path := fs.Arg(0)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	file, err := importer.Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	pool, err := c.connectCurrent(ctx)
	if err != nil {
		return err
	}
	rep, err := importer.Import(ctx, eventstore.New(pool), file, domain.SystemClock{})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(c.stdout, "imported %s\n  MSPs:      %s\n  users:     %s\n  products:  %s\n  customers: %s\n",
		path, rep.MSPs, rep.Users, rep.Products, rep.Customers)
	if rep.Unchanged() {
		fmt.Fprintln(c.stdout, "  nothing changed: the database already held this file")
	}
	return nil
}
