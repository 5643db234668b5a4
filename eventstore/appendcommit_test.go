package eventstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
)

// probeTable is where AppendCommit's tests write "what must commit with the
// events": one row per stream, keyed by the stream id, so that the tests
// (which share the database) never meet each other's rows.
func probeTable(t *testing.T) (*eventstore.Store, *pgxpool.Pool) {
	t.Helper()
	pool := testdb.Pool(t, "eventstore")
	if _, err := pool.Exec(t.Context(), `CREATE TABLE IF NOT EXISTS append_commit_probe (
    stream_id text PRIMARY KEY, version bigint NOT NULL, recorded_at timestamptz NOT NULL)`); err != nil &&
		!isDuplicateTable(err) {
		t.Fatal(err)
	}
	return eventstore.New(pool), pool
}

// isDuplicateTable: two tests creating the table at once may race past IF
// NOT EXISTS; the loser's error is harmless.
func isDuplicateTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P07" || pgErr.Code == "23505")
}

const probeSQL = `INSERT INTO append_commit_probe (stream_id, version, recorded_at) VALUES ($1, $2, now())`

// probe queues the row of the last of events' stream, with the
// transaction's now() as recorded_at (what the events get).
func probe(b *pgx.Batch, events []eventstore.Event) error {
	last := events[len(events)-1]
	b.Queue(probeSQL, last.StreamID, last.Version)
	return nil
}

func probeRow(t *testing.T, pool *pgxpool.Pool, streamID string) (version int64, found bool) {
	t.Helper()
	err := pool.QueryRow(t.Context(), `SELECT version FROM append_commit_probe WHERE stream_id = $1`, streamID).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return version, true
}

// The events and what with queued commit together, in one round trip;
// with sees the events as they are then recorded, but for what only the
// insert makes.
func TestAppendCommit(t *testing.T) {
	t.Parallel()
	store, pool := probeTable(t)
	ctx := t.Context()
	a, b := newStreamID("commit-a"), newStreamID("commit-b")
	appendOrFatal(t, store, eventstore.Append{StreamID: a, StreamType: "test", ExpectedVersion: 0,
		Events: []eventstore.NewEvent{newEvent("Opened", `{"n":1}`)}})

	var seen []eventstore.Event
	recorded, err := store.AppendCommit(ctx, func(batch *pgx.Batch, events []eventstore.Event) error {
		seen = events
		return probe(batch, events)
	},
		eventstore.Append{StreamID: a, StreamType: "test", ExpectedVersion: 1,
			Events: []eventstore.NewEvent{newEvent("Changed", `{"n":2}`), newEvent("Changed", `{"n":3}`)}},
		eventstore.Append{StreamID: b, StreamType: "test", ExpectedVersion: 0,
			Events: []eventstore.NewEvent{newEvent("Opened", `{"n":1}`)}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || len(recorded) != 3 {
		t.Fatalf("with saw %d events, %d recorded, want 3 and 3", len(seen), len(recorded))
	}
	for i, want := range []struct {
		stream  string
		version int64
	}{{a, 2}, {a, 3}, {b, 1}} {
		s, r := seen[i], recorded[i]
		if s.StreamID != want.stream || s.Version != want.version || r.StreamID != want.stream || r.Version != want.version {
			t.Errorf("event %d: with saw %s@%d, recorded %s@%d, want %s@%d", i, s.StreamID, s.Version, r.StreamID, r.Version, want.stream, want.version)
		}
		if s.ID != r.ID || s.Type != r.Type || string(s.Data) != string(r.Data) {
			t.Errorf("event %d: with saw %s %s %s, recorded %s %s %s", i, s.ID, s.Type, s.Data, r.ID, r.Type, r.Data)
		}
		if s.Position != 0 || r.Position == 0 || r.TransactionID == 0 || len(r.Hash) == 0 {
			t.Errorf("event %d: with's position %d (want none), recorded position %d, xid %d, hash %x", i, s.Position, r.Position, r.TransactionID, r.Hash)
		}
	}
	wantVersion(t, store, a, 3)
	wantVersion(t, store, b, 1)
	if v, ok := probeRow(t, pool, b); !ok || v != 1 {
		t.Errorf("the queued row of %s: version %d (found %v), want 1", b, v, ok)
	}
	// The queued statement's now() is the events' recorded_at.
	var same bool
	if err := pool.QueryRow(ctx, `SELECT p.recorded_at = e.recorded_at FROM append_commit_probe p
JOIN events e ON e.stream_id = p.stream_id AND e.version = p.version WHERE p.stream_id = $1`, b).Scan(&same); err != nil || !same {
		t.Errorf("the queued row's now() equals the event's recorded_at: %v (err %v)", same, err)
	}
}

// A version conflict is an error PostgreSQL raises, so nothing queued after
// the insert commits, and the conflict names the stream's version.
func TestAppendCommitConflictCommitsNothing(t *testing.T) {
	t.Parallel()
	store, pool := probeTable(t)
	a, b := newStreamID("conflict-a"), newStreamID("conflict-b")
	appendOrFatal(t, store, eventstore.Append{StreamID: a, StreamType: "test", ExpectedVersion: 0,
		Events: []eventstore.NewEvent{newEvent("Opened", `{}`), newEvent("Changed", `{}`)}})

	for _, tt := range []struct {
		name    string
		appends []eventstore.Append
	}{
		{"the only stream", []eventstore.Append{{StreamID: a, StreamType: "test", ExpectedVersion: 1,
			Events: []eventstore.NewEvent{newEvent("Changed", `{}`)}}}},
		{"the second of two, several events", []eventstore.Append{
			{StreamID: b, StreamType: "test", ExpectedVersion: 0, Events: []eventstore.NewEvent{newEvent("Opened", `{}`)}},
			{StreamID: a, StreamType: "test", ExpectedVersion: 5, Events: []eventstore.NewEvent{newEvent("Changed", `{}`), newEvent("Changed", `{}`)}},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			_, err := store.AppendCommit(t.Context(), func(batch *pgx.Batch, events []eventstore.Event) error {
				called = true
				return probe(batch, events)
			}, tt.appends...)
			var conflict *eventstore.VersionConflictError
			if !errors.As(err, &conflict) || conflict.StreamID != a || conflict.Actual != 2 {
				t.Fatalf("err = %v, want a version conflict on %s, at version 2", err, a)
			}
			if !called {
				t.Error("with was not called")
			}
			wantVersion(t, store, a, 2)
			wantVersion(t, store, b, 0)
			for _, id := range []string{a, b} {
				if _, ok := probeRow(t, pool, id); ok {
					t.Errorf("the queued row of %s was committed with the refused append", id)
				}
			}
		})
	}
	// The pool's connections are usable afterwards: the aborted
	// transactions were rolled back.
	appendOrFatal(t, store, eventstore.Append{StreamID: a, StreamType: "test", ExpectedVersion: 2,
		Events: []eventstore.NewEvent{newEvent("Changed", `{}`)}})
}

// A queued statement that fails stops the commit: the events are not
// recorded, and the error is PostgreSQL's.
func TestAppendCommitFailingStatementCommitsNothing(t *testing.T) {
	t.Parallel()
	store, pool := probeTable(t)
	a := newStreamID("failing")
	_, err := store.AppendCommit(t.Context(), func(batch *pgx.Batch, events []eventstore.Event) error {
		if err := probe(batch, events); err != nil {
			return err
		}
		return probe(batch, events) // the same key again: a unique violation
	}, eventstore.Append{StreamID: a, StreamType: "test", ExpectedVersion: 0, Events: []eventstore.NewEvent{newEvent("Opened", `{}`)}})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("err = %v, want the unique violation", err)
	}
	wantVersion(t, store, a, 0)
	if _, ok := probeRow(t, pool, a); ok {
		t.Error("the first queued row committed without the events")
	}

	// An error of with itself sends nothing.
	boom := errors.New("boom")
	if _, err := store.AppendCommit(t.Context(), func(*pgx.Batch, []eventstore.Event) error { return boom },
		eventstore.Append{StreamID: a, StreamType: "test", ExpectedVersion: 0, Events: []eventstore.NewEvent{newEvent("Opened", `{}`)}}); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want with's error", err)
	}
	wantVersion(t, store, a, 0)
}

// The versions must be known before the insert.
func TestAppendCommitNeedsExpectedVersion(t *testing.T) {
	t.Parallel()
	store, _ := probeTable(t)
	_, err := store.AppendCommit(context.Background(), probe,
		eventstore.Append{StreamID: newStreamID("any"), StreamType: "test", ExpectedVersion: eventstore.AnyVersion,
			Events: []eventstore.NewEvent{newEvent("Opened", `{}`)}})
	if !errors.Is(err, eventstore.ErrInvalidAppend) {
		t.Fatalf("err = %v, want ErrInvalidAppend", err)
	}
}
