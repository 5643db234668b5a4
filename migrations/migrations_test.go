package migrations_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/migrations"
)

// freshDB creates an empty database of its own on the test server, dropped
// when the test ends, and returns its URL. testdb.Pool cannot serve here:
// its databases are migrated already.
func freshDB(t *testing.T) string { return testdb.Empty(t) }

// newPool opens a pool on dbURL, closed when the test ends (before the
// database is dropped: cleanups run last registered first).
func newPool(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func allVersions(t *testing.T) []string {
	t.Helper()
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	versions := make([]string, len(all))
	for i, m := range all {
		versions[i] = m.Version
	}
	return versions
}

// ledger returns schema_migrations' versions in the order their rows were
// committed (each migration commits in a transaction of its own, so xids
// increase in the order of application).
func ledger(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT version FROM schema_migrations ORDER BY xmin::text::bigint, version`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return versions
}

func wantNoAdvisoryLock(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d advisory locks still held on the database after Apply", n)
	}
}

func TestAllMatchesTheFiles(t *testing.T) {
	t.Parallel()
	names, err := filepath.Glob("*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 || len(all) != len(names) {
		t.Fatalf("All returns %d migrations, the package has %d files", len(all), len(names))
	}
	pattern := regexp.MustCompile(`^[0-9]{3}_[a-z0-9_]+$`)
	for i, m := range all {
		if want := strings.TrimSuffix(names[i], ".up.sql"); m.Version != want {
			t.Errorf("migration %d is %q, want %q (lexical order)", i, m.Version, want)
		}
		if !pattern.MatchString(m.Version) {
			t.Errorf("version %q is not NNN_name", m.Version)
		}
		b, err := os.ReadFile(names[i])
		if err != nil {
			t.Fatal(err)
		}
		if m.SQL != string(b) {
			t.Errorf("%s: embedded SQL differs from the file", m.Version)
		}
	}
}

func TestApplyOnEmptyDatabase(t *testing.T) {
	t.Parallel()
	pool := newPool(t, freshDB(t))
	ctx := t.Context()
	all := allVersions(t)

	pending, err := migrations.Pending(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pending, all) {
		t.Errorf("Pending on an empty database = %q, want every version %q", pending, all)
	}

	applied, err := migrations.Apply(ctx, pool)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !slices.Equal(applied, all) {
		t.Errorf("Apply applied %q, want %q", applied, all)
	}
	if got := ledger(t, pool); !slices.Equal(got, all) {
		t.Errorf("schema_migrations, in the order recorded: %q, want %q", got, all)
	}
	var stamps []time.Time
	if err := pool.QueryRow(ctx, `SELECT array_agg(applied_at ORDER BY version) FROM schema_migrations`).Scan(&stamps); err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(stamps, func(a, b time.Time) int { return a.Compare(b) }) {
		t.Errorf("applied_at not in version order: %v", stamps)
	}
	for _, table := range []string{"events", "msps", "msp_users", "products"} {
		var exists bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists {
			t.Errorf("table %s missing after Apply", table)
		}
	}
	wantNoAdvisoryLock(t, pool)

	again, err := migrations.Apply(ctx, pool)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if len(again) != 0 {
		t.Errorf("second Apply applied %q, want nothing", again)
	}
	if got := ledger(t, pool); !slices.Equal(got, all) {
		t.Errorf("schema_migrations after the second Apply: %q, want %q", got, all)
	}
	pending, err = migrations.Pending(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 0 {
		t.Errorf("Pending after Apply = %q, want none", pending)
	}
	wantNoAdvisoryLock(t, pool)
}

// TestApplyResumes: a database where only the first migration was applied
// gets the rest, and only the rest.
func TestApplyResumes(t *testing.T) {
	t.Parallel()
	pool := newPool(t, freshDB(t))
	ctx := t.Context()
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 2 {
		t.Skip("fewer than two migrations")
	}
	// What Apply would have left after the first migration.
	if _, err := pool.Exec(ctx, `CREATE TABLE schema_migrations (
		version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, all[0].SQL); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, all[0].Version); err != nil {
		t.Fatal(err)
	}
	versions := allVersions(t)
	pending, err := migrations.Pending(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pending, versions[1:]) {
		t.Errorf("Pending = %q, want %q", pending, versions[1:])
	}
	applied, err := migrations.Apply(ctx, pool)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !slices.Equal(applied, versions[1:]) {
		t.Errorf("Apply applied %q, want %q", applied, versions[1:])
	}
	if got := ledger(t, pool); !slices.Equal(got, versions) {
		t.Errorf("schema_migrations: %q, want %q", got, versions)
	}
}

// TestApplyConcurrently: processes starting together on one empty database
// all succeed, and every migration runs exactly once.
func TestApplyConcurrently(t *testing.T) {
	t.Parallel()
	const processes = 8
	all := allVersions(t)
	for round := range 3 {
		t.Run(fmt.Sprint("round ", round+1), func(t *testing.T) {
			t.Parallel()
			dbURL := freshDB(t)
			pools := make([]*pgxpool.Pool, processes)
			for i := range pools {
				pools[i] = newPool(t, dbURL)
				// Connect now, so that the Apply calls start together.
				if err := pools[i].Ping(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			var (
				wg      sync.WaitGroup
				start   = make(chan struct{})
				applied = make([][]string, processes)
				errs    = make([]error, processes)
			)
			for i, pool := range pools {
				wg.Go(func() {
					<-start
					applied[i], errs[i] = migrations.Apply(t.Context(), pool)
				})
			}
			close(start)
			wg.Wait()

			times := map[string]int{}
			for i := range processes {
				if errs[i] != nil {
					t.Errorf("Apply %d: %v", i, errs[i])
				}
				if len(applied[i]) > 0 && !slices.Equal(applied[i], all) {
					// One process holds the lock and applies everything.
					t.Errorf("Apply %d applied %q: want all of %q or nothing", i, applied[i], all)
				}
				for _, v := range applied[i] {
					times[v]++
				}
			}
			for _, v := range all {
				if times[v] != 1 {
					t.Errorf("%s applied %d times, want once", v, times[v])
				}
			}
			if got := ledger(t, pools[0]); !slices.Equal(got, all) {
				t.Errorf("schema_migrations: %q, want one row per version %q", got, all)
			}
			pending, err := migrations.Pending(t.Context(), pools[0])
			if err != nil {
				t.Fatal(err)
			}
			if len(pending) != 0 {
				t.Errorf("Pending after the concurrent Apply calls: %q", pending)
			}
			wantNoAdvisoryLock(t, pools[0])
		})
	}
}

// migrationLock is the advisory lock key Apply takes ("upsell" in ASCII).
const migrationLock int64 = 0x7570_7365_6c6c

// TestApplyCancelledWhileWaiting: an Apply whose context is cancelled while
// it waits for the lock fails, and leaves nothing behind that would block
// the next one.
func TestApplyCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	dbURL := freshDB(t)
	holder := newPool(t, dbURL)
	conn, err := holder.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Another process migrating: it holds the lock Apply takes.
	if _, err := conn.Exec(t.Context(), `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		t.Fatal(err)
	}
	waiter := newPool(t, dbURL)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := migrations.Apply(ctx, waiter); err == nil {
		t.Fatal("Apply succeeded while another session held the migration lock")
	}
	if _, err := conn.Exec(t.Context(), `SELECT pg_advisory_unlock($1)`, migrationLock); err != nil {
		t.Fatal(err)
	}
	conn.Release()

	done := make(chan error, 1)
	go func() {
		_, err := migrations.Apply(t.Context(), waiter)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Apply after the lock was released: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Apply still blocked 20 s after the lock was released")
	}
	pending, err := migrations.Pending(t.Context(), waiter)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 0 {
		t.Errorf("Pending: %q", pending)
	}
}

// TestEventsSchema checks the events table against the design (see
// 001_events.up.sql and package eventstore, which relies on every part).
func TestEventsSchema(t *testing.T) {
	t.Parallel()
	pool := testdb.Pool(t, "migrations")
	ctx := t.Context()

	type column struct {
		Name, Type, Nullable, Default, Identity, Generation string
	}
	rows, err := pool.Query(ctx, `SELECT column_name, udt_name, is_nullable, coalesce(column_default, ''),
			is_identity, coalesce(identity_generation, '')
		FROM information_schema.columns
		WHERE table_schema = 'public' AND table_name = 'events' ORDER BY ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		return c, r.Scan(&c.Name, &c.Type, &c.Nullable, &c.Default, &c.Identity, &c.Generation)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []column{
		{"position", "int8", "NO", "", "YES", "ALWAYS"},
		{"event_id", "uuid", "NO", "", "NO", ""},
		{"stream_id", "text", "NO", "", "NO", ""},
		{"stream_type", "text", "NO", "", "NO", ""},
		{"version", "int8", "NO", "", "NO", ""},
		{"transaction_id", "xid8", "NO", "pg_current_xact_id()", "NO", ""},
		{"event_type", "text", "NO", "", "NO", ""},
		{"schema_version", "int4", "NO", "1", "NO", ""},
		{"data", "jsonb", "NO", "", "NO", ""},
		{"metadata", "jsonb", "NO", "'{}'::jsonb", "NO", ""},
		{"recorded_at", "timestamptz", "NO", "now()", "NO", ""},
		{"hash", "bytea", "NO", "", "NO", ""}, // migration 005
	}
	if !slices.Equal(got, want) {
		t.Errorf("events columns:\n got  %+v\n want %+v", got, want)
	}

	type constraint struct {
		Name, Type string
		Columns    []string
		Deferrable bool
		Def        string
	}
	rows, err = pool.Query(ctx, `SELECT c.conname, c.contype::text,
			coalesce(array_agg(a.attname::text ORDER BY k.n) FILTER (WHERE a.attname IS NOT NULL), '{}'),
			c.condeferrable, pg_get_constraintdef(c.oid)
		FROM pg_constraint c
		LEFT JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) ON true
		LEFT JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
		WHERE c.conrelid = 'events'::regclass AND c.contype <> 'n'
		GROUP BY c.oid, c.conname, c.contype, c.condeferrable ORDER BY c.conname`)
	if err != nil {
		t.Fatal(err)
	}
	constraints, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (constraint, error) {
		var c constraint
		return c, r.Scan(&c.Name, &c.Type, &c.Columns, &c.Deferrable, &c.Def)
	})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]constraint{}
	var pk, checks []constraint
	for _, c := range constraints {
		byName[c.Name] = c
		switch c.Type {
		case "p":
			pk = append(pk, c)
		case "c":
			checks = append(checks, c)
		}
	}
	if len(pk) != 1 || !slices.Equal(pk[0].Columns, []string{"position"}) {
		t.Errorf("primary key %+v, want (position)", pk)
	}
	for name, cols := range map[string][]string{
		"events_stream_version_key": {"stream_id", "version"},
		"events_event_id_key":       {"event_id"},
	} {
		c, ok := byName[name]
		switch {
		case !ok:
			t.Errorf("constraint %s missing; constraints: %+v", name, constraints)
		case c.Type != "u" || !slices.Equal(c.Columns, cols):
			t.Errorf("constraint %s is %s on %q, want UNIQUE (%s)", name, c.Def, c.Columns, strings.Join(cols, ", "))
		case c.Deferrable:
			// Append relies on the violation surfacing at the INSERT.
			t.Errorf("constraint %s is deferrable", name)
		}
	}
	checkDefs := map[string]bool{}
	for _, c := range checks {
		checkDefs[c.Def] = true
	}
	for _, def := range []string{"CHECK ((version > 0))", "CHECK ((schema_version > 0))"} {
		if !checkDefs[def] {
			t.Errorf("no %s; checks: %+v", def, checks)
		}
	}

	var indexDef string
	if err := pool.QueryRow(ctx, `SELECT pg_get_indexdef('events_log_order'::regclass)`).Scan(&indexDef); err != nil {
		t.Fatalf("index events_log_order: %v", err)
	}
	if !strings.HasSuffix(indexDef, "ON public.events USING btree (transaction_id, \"position\")") {
		t.Errorf("events_log_order is %q, want btree (transaction_id, position)", indexDef)
	}
}

// TestEventsSchemaBehaviour writes to events in a transaction it rolls back:
// the defaults and constraints do what the event store expects.
func TestEventsSchemaBehaviour(t *testing.T) {
	t.Parallel()
	pool := testdb.Pool(t, "migrations")
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	stream := "schema-test-" + uuid.NewString()
	id := uuid.New()
	var (
		position   int64
		sameXact   bool
		schema     int
		metadata   string
		recordedAt time.Time
		now        time.Time
	)
	err = tx.QueryRow(ctx, `INSERT INTO events (event_id, stream_id, stream_type, version, event_type, data, hash)
		VALUES ($1, $2, 'test', 1, 'Tested', '{}', sha256(''))
		RETURNING position, transaction_id = pg_current_xact_id(), schema_version, metadata::text, recorded_at, now()`,
		id, stream).Scan(&position, &sameXact, &schema, &metadata, &recordedAt, &now)
	if err != nil {
		t.Fatal(err)
	}
	if position <= 0 || !sameXact || schema != 1 || metadata != "{}" || !recordedAt.Equal(now) {
		t.Errorf("defaults: position %d, transaction_id is the writer's %v, schema_version %d, metadata %s, recorded_at %v (now %v)",
			position, sameXact, schema, metadata, recordedAt, now)
	}

	tests := []struct {
		name, sql     string
		args          []any
		code, conname string
	}{
		{"same stream and version", `INSERT INTO events (event_id, stream_id, stream_type, version, event_type, data, hash)
			VALUES (gen_random_uuid(), $1, 'test', 1, 'Tested', '{}', sha256(''))`, []any{stream}, "23505", "events_stream_version_key"},
		{"same event id", `INSERT INTO events (event_id, stream_id, stream_type, version, event_type, data, hash)
			VALUES ($2, $1, 'test', 2, 'Tested', '{}', sha256(''))`, []any{stream, id}, "23505", "events_event_id_key"},
		{"version 0", `INSERT INTO events (event_id, stream_id, stream_type, version, event_type, data, hash)
			VALUES (gen_random_uuid(), $1, 'test', 0, 'Tested', '{}', sha256(''))`, []any{stream}, "23514", "events_version_check"},
		{"schema version 0", `INSERT INTO events (event_id, stream_id, stream_type, version, event_type, schema_version, data, hash)
			VALUES (gen_random_uuid(), $1, 'test', 2, 'Tested', 0, '{}', sha256(''))`, []any{stream}, "23514", "events_schema_version_check"},
		{"a position given", `INSERT INTO events (position, event_id, stream_id, stream_type, version, event_type, data, hash)
			VALUES (1, gen_random_uuid(), $1, 'test', 2, 'Tested', '{}', sha256(''))`, []any{stream}, "428C9", ""},
		{"no hash", `INSERT INTO events (event_id, stream_id, stream_type, version, event_type, data)
			VALUES (gen_random_uuid(), $1, 'test', 2, 'Tested', '{}')`, []any{stream}, "23502", ""},
		{"a hash that is not SHA-256", `INSERT INTO events (event_id, stream_id, stream_type, version, event_type, data, hash)
			VALUES (gen_random_uuid(), $1, 'test', 2, 'Tested', '{}', '\\x00')`, []any{stream}, "23514", "events_hash_check"},
	}
	for _, tt := range tests {
		sp, err := tx.Begin(ctx) // a savepoint: the error must not abort the rest
		if err != nil {
			t.Fatal(err)
		}
		_, err = sp.Exec(ctx, tt.sql, tt.args...)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != tt.code || pgErr.ConstraintName != tt.conname {
			t.Errorf("%s: error %v, want SQLSTATE %s on %q", tt.name, err, tt.code, tt.conname)
		}
		if err := sp.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReferenceSchema checks what package importer relies on.
func TestReferenceSchema(t *testing.T) {
	t.Parallel()
	pool := testdb.Pool(t, "migrations")
	ctx := t.Context()
	var def string
	if err := pool.QueryRow(ctx, `SELECT pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = 'msp_users'::regclass AND conname = 'msp_users_api_key_hash_key'`).Scan(&def); err != nil {
		t.Fatalf("constraint msp_users_api_key_hash_key: %v", err)
	}
	// Deferred to commit, so that one import can swap two users' keys.
	if def != "UNIQUE (api_key_hash) DEFERRABLE INITIALLY DEFERRED" {
		t.Errorf("msp_users_api_key_hash_key is %q", def)
	}
	var typ string
	if err := pool.QueryRow(ctx, `SELECT udt_name FROM information_schema.columns
		WHERE table_name = 'msp_users' AND column_name = 'api_key_hash'`).Scan(&typ); err != nil {
		t.Fatal(err)
	}
	if typ != "bytea" {
		t.Errorf("api_key_hash is %s, want bytea", typ)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	msp := "msp-schema-" + uuid.NewString()
	if _, err := tx.Exec(ctx, `INSERT INTO msps (id, name) VALUES ($1, 'M')`, msp); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO msp_users (msp_id, id, name, api_key_hash) VALUES ($1, 'u', 'U', '\x00')`, msp)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Errorf("a 1-byte api_key_hash: %v, want a check violation", err)
	}
}
