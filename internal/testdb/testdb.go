// Package testdb gives tests a real, migrated PostgreSQL database.
//
// Each test package gets its own database (upsell_test_<name>), dropped and
// created anew once per test binary, so packages that `go test ./...` runs in
// parallel never see each other's rows. The server comes from DATABASE_URL
// (set by scripts/test.sh, which finds or starts one); without it the local
// server at 127.0.0.1:5432 is tried. When no server answers, the test fails
// and says why: a missing database is never a skipped test.
package testdb

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/migrations"
)

// DefaultURL is tried when DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	mu    sync.Mutex
	pools = map[string]*pgxpool.Pool{}
	errs  = map[string]error{}
	// locks keeps, per database, the connection that holds its advisory
	// lock for as long as the test binary runs: a second `make test` on the
	// same server (CI beside a developer) waits instead of dropping the
	// database under the first.
	locks = map[string]*pgx.Conn{}
)

var validName = regexp.MustCompile(`^[a-z0-9_]{1,40}$`)

// ServerURL is the URL of the server the tests use, with its own database.
func ServerURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// URL returns the connection URL of the package database called name.
func URL(name string) (string, error) {
	u, err := url.Parse(ServerURL())
	if err != nil {
		return "", fmt.Errorf("testdb: DATABASE_URL is not a URL: %w", err)
	}
	u.Path = "/upsell_test_" + name
	return u.String(), nil
}

// Pool returns a pool on the migrated database upsell_test_<name>, made
// fresh the first time a test binary asks for it. Tests of one package share
// it; tests that need commits use distinct ids rather than a shared state.
func Pool(t testing.TB, name string) *pgxpool.Pool {
	t.Helper()
	if !validName.MatchString(name) {
		t.Fatalf("testdb: bad database name %q", name)
	}
	mu.Lock()
	defer mu.Unlock()
	if p, ok := pools[name]; ok {
		return p
	}
	if err, ok := errs[name]; ok {
		t.Fatal(err)
	}
	p, err := create(name)
	if err != nil {
		errs[name] = err
		t.Fatal(err)
	}
	pools[name] = p
	return p
}

func create(name string) (*pgxpool.Pool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // may wait for another run
	defer cancel()
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		return nil, fmt.Errorf("testdb: PostgreSQL is not reachable at %s (%w); "+
			"run the tests with `make test`, which finds, starts or installs a server, "+
			"or set DATABASE_URL", redact(ServerURL()), err)
	}
	db := pgx.Identifier{"upsell_test_" + name}.Sanitize()
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", "upsell_test_"+name); err != nil {
		admin.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("testdb: wait for other test runs on %s: %w", db, err)
	}
	locks[name] = admin // released when the process exits
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
		return nil, fmt.Errorf("testdb: drop %s: %w", db, err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		return nil, fmt.Errorf("testdb: create %s: %w", db, err)
	}
	u, err := URL(name)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return nil, fmt.Errorf("testdb: %w", err)
	}
	cfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("testdb: connect to %s: %w", db, err)
	}
	if _, err := migrations.Apply(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("testdb: migrate %s: %w", db, err)
	}
	return pool, nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Empty creates an empty database of the test's own, dropped when the test
// ends, and returns its URL. Tests that need a pristine database (migrating
// from nothing, a story that must start from the fixture) use it; it costs a
// CREATE DATABASE, so the others share Pool.
func Empty(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatalf("testdb: PostgreSQL is not reachable at %s: %v", redact(ServerURL()), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	name := "upsell_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:20]
	db := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatalf("testdb: create %s: %v", db, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, ServerURL())
		if err != nil {
			t.Errorf("testdb: drop %s: %v", db, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
			t.Errorf("testdb: drop %s: %v", db, err)
		}
	})
	u, err := url.Parse(ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// EmptyPool is Empty, migrated, with a pool of up to 32 connections that is
// closed before the database is dropped.
func EmptyPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := Empty(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 32
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // before the database is dropped: cleanups run last first
	if _, err := migrations.Apply(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}
