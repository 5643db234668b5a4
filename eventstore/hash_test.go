package eventstore_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/migrations"
)

// dbHash is the database's own hash function (migration 005) on the
// event's stored fields, chained to prev.
func dbHash(t *testing.T, db eventstore.DBTX, prev []byte, e eventstore.Event) []byte {
	t.Helper()
	var h []byte
	err := db.QueryRow(context.Background(), `SELECT upsell_event_hash($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb)`,
		prev, e.ID, e.StreamID, e.StreamType, e.Version, e.Type, e.SchemaVersion, e.RecordedAt, string(e.Data), string(e.RawMetadata)).Scan(&h)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestHashGoldenVector pins the encoding: the same event must hash the same
// in Go, in the database and in docs/audit.md, where this vector is given
// to auditors who write their own verifier.
func TestHashGoldenVector(t *testing.T) {
	t.Parallel()
	store, _ := setup(t)
	e := eventstore.Event{
		ID:            uuid.MustParse("0190a4f2-7c3e-7d4b-9a01-2b3c4d5e6f70"),
		StreamID:      "8e3f0c2a-5b1d-4e6f-9a7b-1c2d3e4f5a6b",
		StreamType:    "change_quote",
		Version:       2,
		Type:          "SeatsChanged",
		SchemaVersion: 1,
		RecordedAt:    time.Date(2026, 11, 25, 13, 0, 0, 123456000, time.UTC),
		Data:          json.RawMessage(`{"new_seats": 700, "prior_seats": 682, "product_code": "EMAIL-SEC"}`),
		RawMetadata:   json.RawMessage(`{"msp_id": "msp-northwind", "user_id": "nw-alex"}`),
	}
	prev, _ := hex.DecodeString("a3f1c2e4b5d60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90")
	const want = "94f3830eaf45acd10a40f314d9edd21a267c19cae1f9afc9814e92776a16cb98"
	goHash := hex.EncodeToString(eventstore.EventHash(prev, e))
	if got := hex.EncodeToString(dbHash(t, store.Pool(), prev, e)); got != goHash {
		t.Fatalf("database hash %s, Go hash %s", got, goHash)
	}
	if goHash != want {
		t.Errorf("the golden vector hashes to %s, want %s (update docs/audit.md with the test if the encoding changed on purpose)", goHash, want)
	}
}

// TestHashGoAgreesWithDatabase: the Go implementation and the database's
// function agree on awkward content, and every event appended carries the
// hash that chains it to the previous one.
func TestHashGoAgreesWithDatabase(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	stream := newStreamID("quote: ,with separators,")
	meta := eventstore.Metadata{MSPID: "msp-ü", UserID: "user:1,2", CorrelationID: "c", CausationID: "d"}
	datas := []string{
		`{}`,
		`{"a": 1}`,
		`{"text": "Grüße, 日本語 and \"quotes\", back\\slash, tab\t, newline\n", "emoji": "🙂"}`,
		`{"n": 12345678901234567890, "f": 1.50, "e": 1e3, "neg": -0.0, "nested": {"z": [1, {"y": null}], "a": true}}`,
		`{"long": "` + strings.Repeat("x", 5000) + `"}`,
		`{"b": 2, "a": 1, "a": 3}`, // jsonb keeps the last duplicate key
	}
	var given []eventstore.NewEvent
	for i, d := range datas {
		given = append(given, eventstore.NewEvent{Type: fmt.Sprintf("Type%d,:", i), SchemaVersion: i + 1, Data: json.RawMessage(d), Metadata: meta})
	}
	// One append of several events, then appends of one, then a
	// multi-stream append: every path that computes a hash.
	appended := appendOrFatal(t, store, eventstore.Append{StreamID: stream, StreamType: "qüote", ExpectedVersion: eventstore.NoStream, Events: given[:3]})
	for i, e := range given[3:5] {
		appended = append(appended, appendOrFatal(t, store, eventstore.Append{StreamID: stream, StreamType: "qüote", ExpectedVersion: int64(3 + i), Events: []eventstore.NewEvent{e}})...)
	}
	other := newStreamID("other")
	both, err := store.Append(ctx,
		eventstore.Append{StreamID: stream, StreamType: "qüote", ExpectedVersion: 5, Events: given[5:]},
		eventstore.Append{StreamID: other, StreamType: "other", ExpectedVersion: eventstore.NoStream, Events: given[:2]})
	if err != nil {
		t.Fatal(err)
	}
	appended = append(appended, both[0])

	loaded, err := store.Load(ctx, stream, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != len(datas) || len(appended) != len(datas) {
		t.Fatalf("loaded %d, appended %d events, want %d", len(loaded), len(appended), len(datas))
	}
	var prev []byte
	for i, e := range loaded {
		if len(e.Hash) != eventstore.HashSize {
			t.Fatalf("event %d: hash of %d bytes", i, len(e.Hash))
		}
		if !bytes.Equal(appended[i].Hash, e.Hash) {
			t.Errorf("event %d: Append returned hash %x, Load %x", i, appended[i].Hash, e.Hash)
		}
		if got := eventstore.EventHash(prev, e); !bytes.Equal(got, e.Hash) {
			t.Errorf("event %d (%s): Go computes %x, the database stored %x", i, e.Data, got, e.Hash)
		}
		if got := dbHash(t, store.Pool(), prev, e); !bytes.Equal(got, e.Hash) {
			t.Errorf("event %d: upsell_event_hash gives %x now, %x was stored", i, got, e.Hash)
		}
		prev = e.Hash
	}
	stats, err := eventstore.VerifyChain(loaded)
	if err != nil || stats != (eventstore.ChainStats{Events: int64(len(datas)), Streams: 1}) {
		t.Errorf("VerifyChain = %+v, %v", stats, err)
	}
	if stats, err := eventstore.VerifyStream(ctx, store.Pool(), other); err != nil || stats.Events != 2 {
		t.Errorf("VerifyStream(other) = %+v, %v", stats, err)
	}

	// The log's readers return the same hashes.
	var cur eventstore.Cursor
	read := follow(t, store, &cur, 100, loaded[len(loaded)-1].ID)
	for _, e := range loaded {
		if i := indexOf(read, e.ID); i < 0 || !bytes.Equal(read[i].Hash, e.Hash) || !bytes.Equal(read[i].RawMetadata, e.RawMetadata) {
			t.Errorf("ReadLog does not return event %d with its hash and raw metadata", e.Version)
		}
	}
}

// TestHashAgreesOnEdgeValues compares the two implementations on values
// appends do not produce: times before 1970 and far ahead, big versions,
// empty strings, a prev that is not 32 bytes.
func TestHashAgreesOnEdgeValues(t *testing.T) {
	t.Parallel()
	store, _ := setup(t)
	base := eventstore.Event{
		ID: uuid.New(), StreamID: "s", StreamType: "t", Version: 1, Type: "E", SchemaVersion: 1,
		RecordedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Data: json.RawMessage(`{}`), RawMetadata: json.RawMessage(`{}`),
	}
	at := func(t time.Time) func(*eventstore.Event) { return func(e *eventstore.Event) { e.RecordedAt = t } }
	cases := []struct {
		name string
		prev []byte
		edit func(*eventstore.Event)
	}{
		{"plain", nil, func(*eventstore.Event) {}},
		{"before 1970", nil, at(time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC))},
		{"epoch", nil, at(time.Unix(0, 0))},
		{"year 9999", nil, at(time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC))},
		{"another zone", nil, at(base.RecordedAt.In(time.FixedZone("x", -7*3600)))},
		{"big version", nil, func(e *eventstore.Event) { e.Version, e.SchemaVersion = 1<<62+7, 2147483647 }},
		{"empty strings", nil, func(e *eventstore.Event) { e.StreamID, e.StreamType, e.Type = "", "", "" }},
		{"multibyte fields", nil, func(e *eventstore.Event) { e.StreamID, e.Type = "ストリーム", "Événement" }},
		{"zero prev", make([]byte, 32), func(*eventstore.Event) {}},
		{"short prev", []byte{1, 2, 3}, func(*eventstore.Event) {}},
		{"empty prev", []byte{}, func(*eventstore.Event) {}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := base
			tt.edit(&e)
			if got, want := eventstore.EventHash(tt.prev, e), dbHash(t, store.Pool(), tt.prev, e); !bytes.Equal(got, want) {
				t.Errorf("Go %x, database %x", got, want)
			}
		})
	}
	// nil and 32 zero bytes are the same genesis.
	if !bytes.Equal(eventstore.EventHash(nil, base), eventstore.EventHash(make([]byte, 32), base)) {
		t.Error("nil prev does not hash as the genesis, 32 zero bytes")
	}
}

// TestHashChainUnderConcurrentAppends: writers racing on one stream (the
// losers retry) leave a chain that verifies.
func TestHashChainUnderConcurrentAppends(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	stream := newStreamID("race")
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				for {
					events := []eventstore.NewEvent{newEvent("Raced", fmt.Sprintf(`{"w": %d, "i": %d}`, w, i))}
					if i%3 == 0 {
						events = append(events, newEvent("Raced", `{"second": true}`))
					}
					_, err := store.Append(ctx, eventstore.Append{StreamID: stream, StreamType: "race", ExpectedVersion: eventstore.AnyVersion, Events: events})
					if err == nil {
						break
					}
					if !errors.Is(err, eventstore.ErrVersionConflict) {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	stats, err := eventstore.VerifyStream(ctx, store.Pool(), stream)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(writers * (each + 4)); stats.Events != want {
		t.Errorf("%d events verified, want %d", stats.Events, want)
	}
}

// chain builds a valid stream of n events in memory.
func chain(stream string, n int) []eventstore.Event {
	events := make([]eventstore.Event, n)
	var prev []byte
	for i := range events {
		e := eventstore.Event{
			ID: uuid.New(), StreamID: stream, StreamType: "test", Version: int64(i + 1), Type: "E", SchemaVersion: 1,
			RecordedAt: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC),
			Data:       json.RawMessage(fmt.Sprintf(`{"i": %d}`, i)), RawMetadata: json.RawMessage(`{}`),
		}
		e.Hash = eventstore.EventHash(prev, e)
		prev = e.Hash
		events[i] = e
	}
	return events
}

func TestVerifyChainReasons(t *testing.T) {
	t.Parallel()
	// Each case tampers with a copy of streams a (5 events) and b (3), in
	// that order, and names the first bad event: stream, version, index in
	// the tampered slice, reason.
	tests := []struct {
		name    string
		tamper  func([]eventstore.Event) []eventstore.Event
		stream  string
		version int64
		index   int
		reason  eventstore.ChainReason
		detail  string
	}{
		{"data edited", func(es []eventstore.Event) []eventstore.Event {
			es[2].Data = json.RawMessage(`{"i": 99}`)
			return es
		}, "a", 3, 2, eventstore.ReasonHashMismatch, "was edited"},
		{"first event's time edited", func(es []eventstore.Event) []eventstore.Event {
			es[0].RecordedAt = es[0].RecordedAt.Add(time.Microsecond)
			return es
		}, "a", 1, 0, eventstore.ReasonHashMismatch, "the event was edited"},
		{"hash edited", func(es []eventstore.Event) []eventstore.Event {
			es[6].Hash = bytes.Clone(es[6].Hash)
			es[6].Hash[0] ^= 1
			return es
		}, "b", 2, 6, eventstore.ReasonHashMismatch, ""},
		{"hash truncated", func(es []eventstore.Event) []eventstore.Event {
			es[1].Hash = es[1].Hash[:31]
			return es
		}, "a", 2, 1, eventstore.ReasonHashMismatch, "31 bytes"},
		{"middle event deleted", func(es []eventstore.Event) []eventstore.Event {
			return append(es[:2:2], es[3:]...)
		}, "a", 4, 2, eventstore.ReasonVersionGap, "version 3 is missing"},
		{"first event deleted", func(es []eventstore.Event) []eventstore.Event {
			return es[1:]
		}, "a", 2, 0, eventstore.ReasonVersionGap, "version 1 is missing"},
		{"two events deleted", func(es []eventstore.Event) []eventstore.Event {
			return append(es[:1:1], es[3:]...)
		}, "a", 4, 1, eventstore.ReasonVersionGap, "versions 2 to 3 are missing"},
		{"duplicate version", func(es []eventstore.Event) []eventstore.Event {
			dup := es[1]
			dup.ID = uuid.New()
			return append(es[:2:2], append([]eventstore.Event{dup}, es[2:]...)...)
		}, "a", 2, 2, eventstore.ReasonOutOfOrder, "appears twice"},
		{"versions out of order", func(es []eventstore.Event) []eventstore.Event {
			es[2], es[3] = es[3], es[2]
			return es
		}, "a", 4, 2, eventstore.ReasonVersionGap, ""},
		{"versions swapped", func(es []eventstore.Event) []eventstore.Event {
			es[1].Version, es[2].Version = 3, 2
			es[1], es[2] = es[2], es[1] // read in version order
			return es
		}, "a", 2, 1, eventstore.ReasonNotChained, "recorded as version 3"},
		{"events renumbered after a delete", func(es []eventstore.Event) []eventstore.Event {
			es = append(es[:1:1], es[2:]...)
			for i := 1; i < len(es) && es[i].StreamID == "a"; i++ {
				es[i].Version--
			}
			return es
		}, "a", 2, 1, eventstore.ReasonNotChained, "renumbered"},
		// With its predecessor gone and no event after it, nothing tells a
		// renumbered last event from an edited one.
		{"last event renumbered after a delete", func(es []eventstore.Event) []eventstore.Event {
			es = append(es[:3:3], es[4:]...)
			es[3].Version--
			return es
		}, "a", 4, 3, eventstore.ReasonHashMismatch, "edited"},
		{"event moved to the head of another stream", func(es []eventstore.Event) []eventstore.Event {
			moved := es[4]
			moved.StreamID, moved.Version = "b", 4
			return append(es[:4:4], append(es[5:], moved)...)
		}, "b", 4, 7, eventstore.ReasonHashMismatch, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			events := tt.tamper(append(chain("a", 5), chain("b", 3)...))
			_, err := eventstore.VerifyChain(events)
			var ce *eventstore.ChainError
			if !errors.As(err, &ce) || !errors.Is(err, eventstore.ErrChainBroken) {
				t.Fatalf("VerifyChain = %v, want a *ChainError matching ErrChainBroken", err)
			}
			want := events[tt.index]
			if ce.StreamID != tt.stream || ce.Version != tt.version || ce.EventID != want.ID || ce.Reason != tt.reason || !strings.Contains(ce.Detail, tt.detail) {
				t.Errorf("got %+v\nwant stream %s version %d event %s reason %q, detail with %q", ce, tt.stream, tt.version, want.ID, tt.reason, tt.detail)
			}
			for _, part := range []string{ce.StreamID, fmt.Sprint(ce.Version), ce.EventID.String(), string(ce.Reason)} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("%q does not name %q", err, part)
				}
			}
		})
	}

	t.Run("intact", func(t *testing.T) {
		t.Parallel()
		stats, err := eventstore.VerifyChain(append(chain("a", 5), chain("b", 3)...))
		if err != nil || stats != (eventstore.ChainStats{Events: 8, Streams: 2}) {
			t.Errorf("VerifyChain = %+v, %v", stats, err)
		}
		if stats, err := eventstore.VerifyChain(nil); err != nil || stats != (eventstore.ChainStats{}) {
			t.Errorf("VerifyChain(nil) = %+v, %v", stats, err)
		}
	})
	t.Run("last event deleted is not detected", func(t *testing.T) {
		t.Parallel()
		// The documented limit of a chain: what remains is a valid chain.
		if _, err := eventstore.VerifyChain(chain("a", 5)[:4]); err != nil {
			t.Errorf("VerifyChain without the last event = %v; a truncated chain verifies", err)
		}
	})
}

// TestVerifyAllFindsTampering edits the table with SQL, exactly as someone
// with database access would, and expects VerifyAll to name the first bad
// event.
func TestVerifyAllFindsTampering(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sql     string
		stream  string // the first bad event's stream and version; "" when nothing can be found
		version int64
		reason  eventstore.ChainReason
	}{
		{"data updated", `UPDATE events SET data = '{"i": 42}' WHERE stream_id = 'b' AND version = 2`, "b", 2, eventstore.ReasonHashMismatch},
		{"metadata updated", `UPDATE events SET metadata = '{"user_id": "someone else"}' WHERE stream_id = 'b' AND version = 1`, "b", 1, eventstore.ReasonHashMismatch},
		{"metadata replaced by something that does not decode", `UPDATE events SET metadata = '{"user_id": 5}' WHERE stream_id = 'a' AND version = 3`, "a", 3, eventstore.ReasonHashMismatch},
		{"hash set to null", `ALTER TABLE events ALTER hash DROP NOT NULL; UPDATE events SET hash = NULL WHERE stream_id = 'c' AND version = 1`, "c", 1, eventstore.ReasonHashMismatch},
		{"recorded_at updated", `UPDATE events SET recorded_at = recorded_at - interval '1 day' WHERE stream_id = 'c' AND version = 3`, "c", 3, eventstore.ReasonHashMismatch},
		{"event type updated", `UPDATE events SET event_type = 'Other' WHERE stream_id = 'a' AND version = 4`, "a", 4, eventstore.ReasonHashMismatch},
		{"middle event deleted", `DELETE FROM events WHERE stream_id = 'b' AND version = 2`, "b", 3, eventstore.ReasonVersionGap},
		{"versions swapped", `UPDATE events SET version = CASE version WHEN 2 THEN 3 ELSE 2 END WHERE stream_id = 'a' AND version IN (2, 3)`, "a", 2, eventstore.ReasonNotChained},
		{"deleted and renumbered", `DELETE FROM events WHERE stream_id = 'c' AND version = 2;
			UPDATE events SET version = version - 1 WHERE stream_id = 'c' AND version > 2`, "c", 2, eventstore.ReasonNotChained},
		{"an event moved to another stream", `UPDATE events SET stream_id = 'z' WHERE stream_id = 'b' AND version = 2`, "b", 3, eventstore.ReasonVersionGap},
		{"a stream renamed", `UPDATE events SET stream_id = 'x' WHERE stream_id = 'c'`, "x", 1, eventstore.ReasonHashMismatch},
		{"an edit with its hash recomputed", `UPDATE events SET data = '{"i": 7}',
			hash = upsell_event_hash((SELECT hash FROM events WHERE stream_id = 'b' AND version = 1), event_id, stream_id, stream_type, version,
			                         event_type, schema_version, recorded_at, '{"i": 7}', metadata)
			WHERE stream_id = 'b' AND version = 2`, "b", 3, eventstore.ReasonHashMismatch},
		// The limit of a chain in the database alone: see docs/audit.md.
		{"the last event deleted", `DELETE FROM events WHERE stream_id = 'b' AND version = 4`, "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, pool := tamperDB(t, []string{"a", "b", "c"}, 4)
			ctx := t.Context()
			if stats, err := eventstore.VerifyAll(ctx, pool, nil); err != nil || stats != (eventstore.ChainStats{Events: 12, Streams: 3}) {
				t.Fatalf("before tampering: VerifyAll = %+v, %v", stats, err)
			}
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit; else the pool cannot close
			// An attacker drops what stands in the way.
			for _, sql := range []string{`ALTER TABLE events DROP CONSTRAINT events_stream_version_key`, tt.sql} {
				if _, err := tx.Exec(ctx, sql); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			_, err = eventstore.VerifyAll(ctx, pool, nil)
			if tt.stream == "" {
				if err != nil {
					t.Fatalf("VerifyAll = %v", err)
				}
				return
			}
			var ce *eventstore.ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("VerifyAll: %v, want a *ChainError", err)
			}
			var wantID uuid.UUID
			if err := pool.QueryRow(ctx, `SELECT event_id FROM events WHERE stream_id = $1 AND version = $2`, tt.stream, tt.version).Scan(&wantID); err != nil {
				t.Fatal(err)
			}
			if ce.StreamID != tt.stream || ce.Version != tt.version || ce.EventID != wantID || ce.Reason != tt.reason {
				t.Errorf("VerifyAll: %v\nwant stream %s version %d (event %s), %s", err, tt.stream, tt.version, wantID, tt.reason)
			}
			// VerifyStream on the stream finds the same.
			_, err = eventstore.VerifyStream(ctx, pool, tt.stream)
			if ce2 := (*eventstore.ChainError)(nil); !errors.As(err, &ce2) || *ce2 != *ce {
				t.Errorf("VerifyStream: %v, VerifyAll: %v", err, ce)
			}
		})
	}
}

// tamperDB is a migrated database of its own holding streams of n events
// each.
func tamperDB(t *testing.T, streams []string, n int) (*eventstore.Store, *pgxpool.Pool) {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), testdb.Empty(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // before testdb drops the database
	if _, err := migrations.Apply(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(pool)
	for _, s := range streams {
		for i := range n {
			appendOrFatal(t, store, eventstore.Append{StreamID: s, StreamType: "quote", ExpectedVersion: int64(i),
				Events: []eventstore.NewEvent{newEvent("E", fmt.Sprintf(`{"i": %d}`, i))}})
		}
	}
	return store, pool
}

// TestMigrationBackfillsTheChain: events recorded before migration 005
// get their hashes from it, chained in version order, so that they verify
// and later appends chain on; a stream with a gap is chained across it and
// verification reports the gap.
func TestMigrationBackfillsTheChain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, testdb.Empty(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	// The database as it was before 005, as migrations.Apply leaves it.
	if _, err := pool.Exec(ctx, `CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if m.Version >= "005" {
			break
		}
		if _, err := pool.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Version, err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, m.Version); err != nil {
			t.Fatal(err)
		}
	}
	// Streams written the way appends wrote them then: a few at once in one
	// transaction (so with one recorded_at), others later; names that sort
	// differently from their insertion order; a stream with a gap.
	_, err = pool.Exec(ctx, `
INSERT INTO events (event_id, stream_id, stream_type, version, event_type, data, metadata)
SELECT gen_random_uuid(), 'stream-' || s, 'test', v, 'E' || v,
       jsonb_build_object('s', s, 'v', v, 'text', 'Grüße, "quoted"'), jsonb_build_object('user_id', 'u' || s)
FROM generate_series(1, 30) AS s, generate_series(1, 12) AS v
ORDER BY v, s DESC`)
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 4; v++ {
		if v == 2 {
			continue // the gap
		}
		if _, err := pool.Exec(ctx, `INSERT INTO events (event_id, stream_id, stream_type, version, event_type, data)
			VALUES (gen_random_uuid(), 'zz-gap', 'test', $1, 'E', '{}')`, v); err != nil {
			t.Fatal(err)
		}
	}

	applied, err := migrations.Apply(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 || applied[0] != "005_hash_chain" {
		t.Fatalf("Apply applied %q, want 005_hash_chain first", applied)
	}

	store := eventstore.New(pool)
	for s := 1; s <= 30; s++ {
		stream := fmt.Sprintf("stream-%d", s)
		stats, err := eventstore.VerifyStream(ctx, pool, stream)
		if err != nil || stats.Events != 12 {
			t.Fatalf("%s after the backfill: %+v, %v", stream, stats, err)
		}
	}
	// The gap is chained across (version 3 follows version 1) and reported.
	gap, err := store.Load(ctx, "zz-gap", eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(gap) != 3 || !bytes.Equal(eventstore.EventHash(gap[0].Hash, gap[1]), gap[1].Hash) {
		t.Errorf("the stream with a gap is not chained across it: %+v", gap)
	}
	_, err = eventstore.VerifyAll(ctx, pool, nil)
	var ce *eventstore.ChainError
	if !errors.As(err, &ce) || ce.StreamID != "zz-gap" || ce.Version != 3 || ce.Reason != eventstore.ReasonVersionGap {
		t.Errorf("VerifyAll = %v, want the gap before zz-gap version 3", err)
	}

	// Appends chain on from the backfilled head.
	appendOrFatal(t, store, eventstore.Append{StreamID: "stream-7", StreamType: "test", ExpectedVersion: 12,
		Events: []eventstore.NewEvent{newEvent("E", `{}`), newEvent("E", `{}`)}})
	if stats, err := eventstore.VerifyStream(ctx, pool, "stream-7"); err != nil || stats.Events != 14 {
		t.Errorf("stream-7 after an append: %+v, %v", stats, err)
	}

	// The column refuses what is not a hash.
	for _, tt := range []struct{ hash any }{{nil}, {[]byte{1, 2, 3}}} {
		_, err := pool.Exec(ctx, `INSERT INTO events (event_id, stream_id, stream_type, version, event_type, data, hash)
			VALUES (gen_random_uuid(), 'refused', 'test', 1, 'E', '{}', $1)`, tt.hash)
		if err == nil {
			t.Errorf("a hash %v was accepted", tt.hash)
		}
	}
}
