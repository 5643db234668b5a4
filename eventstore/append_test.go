package eventstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/upsell-dev/upsell/eventstore"
)

func TestAppendLoadRoundTrip(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	stream := newStreamID("quote")
	meta := eventstore.Metadata{MSPID: "msp-1", UserID: "user-1", CorrelationID: "corr-1", CausationID: "cause-1"}
	given := []eventstore.NewEvent{
		{ID: uuid.New(), Type: "ChangeQuoteOpened", Data: json.RawMessage(`{"customer_id":"c-1","lines":[{"seats":682}]}`), Metadata: meta},
		{Type: "SeatsChanged", SchemaVersion: 2, Data: json.RawMessage(` {"product":"backup", "prior":682,"new":700}`)},
		{Type: "QuoteSaved", Data: json.RawMessage(`{}`), Metadata: eventstore.Metadata{UserID: "user-2"}},
	}
	appended := appendOrFatal(t, store, eventstore.Append{
		StreamID: stream, StreamType: "quote", ExpectedVersion: eventstore.NoStream, Events: given,
	})
	loaded, err := store.Load(ctx, stream, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(appended) != len(given) || len(loaded) != len(given) {
		t.Fatalf("appended %d and loaded %d events, want %d", len(appended), len(loaded), len(given))
	}
	for i, g := range given {
		a, l := appended[i], loaded[i]
		wantSchema := max(g.SchemaVersion, 1)
		if a.Version != int64(i+1) || a.Type != g.Type || a.SchemaVersion != wantSchema ||
			a.StreamID != stream || a.StreamType != "quote" || a.Metadata != g.Metadata || string(a.Data) != string(g.Data) {
			t.Errorf("appended event %d = %+v, from %+v", i, a, g)
		}
		if g.ID != uuid.Nil && a.ID != g.ID {
			t.Errorf("event %d: id %s, given %s", i, a.ID, g.ID)
		}
		if a.ID == uuid.Nil || a.Position <= 0 || a.TransactionID == 0 || a.RecordedAt.IsZero() {
			t.Errorf("appended event %d lacks what the database sets: %+v", i, a)
		}
		if i > 0 && a.Position <= appended[i-1].Position {
			t.Errorf("positions %d then %d: not increasing", appended[i-1].Position, a.Position)
		}
		if l.ID != a.ID || l.Version != a.Version || l.Position != a.Position || l.TransactionID != a.TransactionID ||
			l.Type != a.Type || l.SchemaVersion != a.SchemaVersion || l.StreamID != a.StreamID ||
			l.StreamType != a.StreamType || l.Metadata != a.Metadata || !l.RecordedAt.Equal(a.RecordedAt) {
			t.Errorf("event %d loaded as %+v, appended as %+v", i, l, a)
		}
		if !sameJSON(t, l.Data, g.Data) {
			t.Errorf("event %d data loaded as %s, given %s", i, l.Data, g.Data)
		}
	}
	wantVersion(t, store, stream, int64(len(given)))

	empty, err := store.Load(ctx, newStreamID("unknown"), eventstore.LoadOptions{})
	if err != nil || empty == nil || len(empty) != 0 {
		t.Errorf("unknown stream: Load = %v, %v; want an empty slice", empty, err)
	}
}

func TestAppendVersionConflict(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	tests := []struct {
		name     string
		expected int64
	}{
		{"stale", 1},
		{"ahead", 3},
		{"NoStream on an existing stream", eventstore.NoStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stream := newStreamID("quote")
			appendOrFatal(t, store, eventstore.Append{StreamID: stream, StreamType: "quote", Events: []eventstore.NewEvent{
				newEvent("ChangeQuoteOpened", `{}`), newEvent("ProductAdded", `{}`),
			}})

			_, err := store.Append(ctx, eventstore.Append{StreamID: stream, StreamType: "quote", ExpectedVersion: tt.expected,
				Events: []eventstore.NewEvent{newEvent("QuoteSaved", `{}`)}})
			if !errors.Is(err, eventstore.ErrVersionConflict) {
				t.Fatalf("err = %v, want a version conflict", err)
			}
			var conflict *eventstore.VersionConflictError
			if !errors.As(err, &conflict) {
				t.Fatalf("err = %T, want a *VersionConflictError", err)
			}
			if want := (eventstore.VersionConflictError{StreamID: stream, Expected: tt.expected, Actual: 2}); *conflict != want {
				t.Errorf("conflict = %+v, want %+v", *conflict, want)
			}
			wantVersion(t, store, stream, 2)
		})
	}
}

// TestAppendAnyVersion: AnyVersion continues from whatever the stream holds,
// including nothing.
func TestAppendAnyVersion(t *testing.T) {
	t.Parallel()
	store, _ := setup(t)
	stream := newStreamID("customer")
	for want := int64(1); want <= 3; want++ {
		events := appendOrFatal(t, store, eventstore.Append{StreamID: stream, StreamType: "customer",
			ExpectedVersion: eventstore.AnyVersion, Events: []eventstore.NewEvent{newEvent("SubscriptionAmended", `{}`)}})
		if events[0].Version != want {
			t.Errorf("version %d, want %d", events[0].Version, want)
		}
	}
}

// TestAppendConcurrentWriterLoses drives the other path to a conflict: both
// writers see the stream empty, and the unique key stops the second.
func TestAppendConcurrentWriterLoses(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	stream := newStreamID("quote")
	first := eventstore.Append{StreamID: stream, StreamType: "quote", Events: []eventstore.NewEvent{newEvent("ChangeQuoteOpened", `{}`)}}
	second := eventstore.Append{StreamID: stream, StreamType: "quote", Events: []eventstore.NewEvent{newEvent("ChangeQuoteOpened", `{}`)}}

	tx, err := store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := store.AppendTx(ctx, tx, first); err != nil {
		t.Fatal(err)
	}

	conn, err := store.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	pid := conn.Conn().PgConn().PID()
	done := make(chan error, 1)
	go func() {
		tx2, err := conn.Begin(ctx)
		if err != nil {
			done <- err
			return
		}
		_, err = store.AppendTx(ctx, tx2, second)
		_ = tx2.Rollback(ctx) // before done: the test releases conn after it
		done <- err
	}()
	// The second insert passed the version check and now waits on the first
	// transaction's index entry.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var waiting bool
		err := store.Pool().QueryRow(ctx, `SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second writer never blocked on the first")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	err = <-done
	var conflict *eventstore.VersionConflictError
	if !errors.Is(err, eventstore.ErrVersionConflict) || !errors.As(err, &conflict) {
		t.Fatalf("err = %v, want a version conflict", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Errorf("err = %v, want the unique violation as its cause", err)
	}
	if conflict.StreamID != stream || conflict.Expected != eventstore.NoStream || conflict.Actual != -1 {
		t.Errorf("conflict = %+v", *conflict)
	}
	wantVersion(t, store, stream, 1)
}

func TestAppendDuplicateEventID(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	recorded := appendOrFatal(t, store, eventstore.Append{StreamID: newStreamID("quote"), StreamType: "quote",
		Events: []eventstore.NewEvent{newEvent("ChangeQuoteOpened", `{}`)}})

	stream := newStreamID("quote")
	again := newEvent("ChangeQuoteOpened", `{}`)
	again.ID = recorded[0].ID
	_, err := store.Append(ctx, eventstore.Append{StreamID: stream, StreamType: "quote", Events: []eventstore.NewEvent{again}})
	if !errors.Is(err, eventstore.ErrDuplicateEvent) {
		t.Fatalf("err = %v, want ErrDuplicateEvent", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Errorf("err = %v lost its database cause", err)
	}
	wantVersion(t, store, stream, 0)
}

func TestAppendMultiStream(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	tests := []struct {
		name       string
		customerAt int64 // the expected version given for the customer stream, which is at 1
		reuseID    bool  // give the customer's event an id already recorded
		wantErr    error
	}{
		{name: "both at their versions", customerAt: 1},
		{name: "second stream at another version", customerAt: 0, wantErr: eventstore.ErrVersionConflict},
		{name: "second stream with a recorded event id", customerAt: 1, reuseID: true, wantErr: eventstore.ErrDuplicateEvent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			customer, quote := newStreamID("customer"), newStreamID("quote")
			onboarded := appendOrFatal(t, store, eventstore.Append{StreamID: customer, StreamType: "customer",
				Events: []eventstore.NewEvent{newEvent("CustomerOnboarded", `{}`)}})
			amended := newEvent("SubscriptionAmended", `{"seats":700}`)
			if tt.reuseID {
				amended.ID = onboarded[0].ID
			}

			events, err := store.Append(ctx,
				eventstore.Append{StreamID: quote, StreamType: "quote", ExpectedVersion: eventstore.NoStream,
					Events: []eventstore.NewEvent{newEvent("OrderSubmitted", `{}`), newEvent("QuoteClosed", `{}`)}},
				eventstore.Append{StreamID: customer, StreamType: "customer", ExpectedVersion: tt.customerAt,
					Events: []eventstore.NewEvent{amended}},
			)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				var conflict *eventstore.VersionConflictError
				if errors.As(err, &conflict) && conflict.StreamID != customer {
					t.Errorf("conflict on %s, want %s", conflict.StreamID, customer)
				}
				wantVersion(t, store, quote, 0)
				wantVersion(t, store, customer, 1)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != 3 || events[0].StreamID != quote || events[1].StreamID != quote || events[2].StreamID != customer {
				t.Fatalf("events = %+v, want the quote's two then the customer's", events)
			}
			if events[0].Version != 1 || events[1].Version != 2 || events[2].Version != 2 {
				t.Errorf("versions %d, %d, %d; want 1, 2, 2", events[0].Version, events[1].Version, events[2].Version)
			}
			for _, e := range events[1:] {
				if e.TransactionID != events[0].TransactionID {
					t.Errorf("transaction ids %d and %d: not one transaction", events[0].TransactionID, e.TransactionID)
				}
			}
			wantVersion(t, store, quote, 2)
			wantVersion(t, store, customer, 2)
		})
	}
}

func TestAppendTx(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	pool := store.Pool()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS append_tx_side_rows (key text PRIMARY KEY, stream_id text NOT NULL)`); err != nil {
		t.Fatal(err)
	}

	t.Run("rolled back", func(t *testing.T) {
		t.Parallel()
		stream := newStreamID("quote")
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.AppendTx(ctx, tx, eventstore.Append{StreamID: stream, StreamType: "quote",
			Events: []eventstore.NewEvent{newEvent("ChangeQuoteOpened", `{}`)}}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		wantVersion(t, store, stream, 0)
	})

	t.Run("committed with another row", func(t *testing.T) {
		t.Parallel()
		stream, key := newStreamID("quote"), uuid.NewString()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `INSERT INTO append_tx_side_rows (key, stream_id) VALUES ($1, $2)`, key, stream); err != nil {
			t.Fatal(err)
		}
		events, err := store.AppendTx(ctx, tx,
			eventstore.Append{StreamID: stream, StreamType: "quote", Events: []eventstore.NewEvent{newEvent("ChangeQuoteOpened", `{}`)}},
			eventstore.Append{StreamID: stream + "-audit", StreamType: "audit", Events: []eventstore.NewEvent{newEvent("QuoteAudited", `{}`)}},
		)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 2 {
			t.Fatalf("%d events, want 2", len(events))
		}
		// Not visible outside before the commit.
		wantVersion(t, store, stream, 0)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		wantVersion(t, store, stream, 1)
		wantVersion(t, store, stream+"-audit", 1)
		var got string
		if err := pool.QueryRow(ctx, `SELECT stream_id FROM append_tx_side_rows WHERE key = $1`, key).Scan(&got); err != nil || got != stream {
			t.Errorf("idempotency key: %q, %v", got, err)
		}
	})

	t.Run("conflict on one of several streams", func(t *testing.T) {
		t.Parallel()
		quote, customer := newStreamID("quote"), newStreamID("customer")
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		_, err = store.AppendTx(ctx, tx,
			eventstore.Append{StreamID: quote, StreamType: "quote", Events: []eventstore.NewEvent{newEvent("OrderSubmitted", `{}`)}},
			eventstore.Append{StreamID: customer, StreamType: "customer", ExpectedVersion: 4, Events: []eventstore.NewEvent{newEvent("SubscriptionAmended", `{}`)}},
		)
		var conflict *eventstore.VersionConflictError
		if !errors.As(err, &conflict) || conflict.StreamID != customer || conflict.Actual != 0 {
			t.Fatalf("err = %v, want a conflict on %s at version 0", err, customer)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		wantVersion(t, store, quote, 0)
	})
}

// TestAppendConcurrentWriters: writers racing on one stream, each appending
// at the version it last saw, produce one winner per version and no gaps.
func TestAppendConcurrentWriters(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	stream := newStreamID("customer")
	const writers, attempts = 32, 10

	var (
		mu       sync.Mutex
		winners  = map[int64]uuid.UUID{}
		failures []error
	)
	var wg sync.WaitGroup
	start := make(chan struct{}) // all writers contest version 1 at once
	for w := range writers {
		wg.Go(func() {
			<-start
			var expected int64
			for range attempts {
				events, err := store.Append(ctx, eventstore.Append{StreamID: stream, StreamType: "customer", ExpectedVersion: expected,
					Events: []eventstore.NewEvent{newEvent("SubscriptionAmended", fmt.Sprintf(`{"writer":%d}`, w))}})
				mu.Lock()
				if err == nil {
					if prev, ok := winners[events[0].Version]; ok {
						t.Errorf("version %d won twice: %s and %s", events[0].Version, prev, events[0].ID)
					}
					winners[events[0].Version] = events[0].ID
				} else {
					failures = append(failures, err)
				}
				mu.Unlock()
				if err == nil {
					expected = events[0].Version
					continue
				}
				if expected, err = store.StreamVersion(ctx, stream); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()

	if len(failures) == 0 {
		t.Fatalf("%d writers released at once on one stream, no conflict: the race was not exercised", writers)
	}
	for _, err := range failures {
		var conflict *eventstore.VersionConflictError
		if !errors.Is(err, eventstore.ErrVersionConflict) || !errors.As(err, &conflict) {
			t.Errorf("failure that is not a version conflict: %v", err)
		}
	}
	n := int64(len(winners))
	if n+int64(len(failures)) != writers*attempts {
		t.Errorf("%d successes and %d failures of %d attempts", n, len(failures), writers*attempts)
	}
	events, err := store.Load(ctx, stream, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(events)) != n {
		t.Fatalf("%d events recorded, %d appends succeeded", len(events), n)
	}
	for i, e := range events {
		if e.Version != int64(i+1) {
			t.Fatalf("event %d has version %d: versions not contiguous", i, e.Version)
		}
		if winners[e.Version] != e.ID {
			t.Errorf("version %d is event %s, the append that won it returned %s", e.Version, e.ID, winners[e.Version])
		}
	}
	t.Logf("%d appends won, %d lost to a conflict", n, len(failures))
}

func TestAppendInvalid(t *testing.T) {
	t.Parallel()
	store, ctx := setup(t)
	id := uuid.New()
	valid := func(stream string) eventstore.Append {
		return eventstore.Append{StreamID: stream, StreamType: "quote", Events: []eventstore.NewEvent{newEvent("ChangeQuoteOpened", `{}`)}}
	}
	with := func(stream string, change func(*eventstore.Append)) eventstore.Append {
		a := valid(stream)
		change(&a)
		return a
	}
	withEvent := func(stream string, e eventstore.NewEvent) eventstore.Append {
		return with(stream, func(a *eventstore.Append) { a.Events = []eventstore.NewEvent{e} })
	}
	tests := []struct {
		name    string
		appends func(stream string) []eventstore.Append
	}{
		{"no streams", func(string) []eventstore.Append { return nil }},
		{"empty stream id", func(s string) []eventstore.Append {
			return []eventstore.Append{valid(s), with(s, func(a *eventstore.Append) { a.StreamID = "" })}
		}},
		{"empty stream type", func(s string) []eventstore.Append {
			return []eventstore.Append{with(s, func(a *eventstore.Append) { a.StreamType = "" })}
		}},
		{"expected version below AnyVersion", func(s string) []eventstore.Append {
			return []eventstore.Append{with(s, func(a *eventstore.Append) { a.ExpectedVersion = -2 })}
		}},
		{"no events", func(s string) []eventstore.Append {
			return []eventstore.Append{with(s, func(a *eventstore.Append) { a.Events = nil })}
		}},
		{"empty event type", func(s string) []eventstore.Append {
			return []eventstore.Append{withEvent(s, newEvent("", `{}`))}
		}},
		{"negative schema version", func(s string) []eventstore.Append {
			return []eventstore.Append{withEvent(s, eventstore.NewEvent{Type: "ProductAdded", SchemaVersion: -1, Data: json.RawMessage(`{}`)})}
		}},
		{"no data", func(s string) []eventstore.Append {
			return []eventstore.Append{withEvent(s, eventstore.NewEvent{Type: "ProductAdded"})}
		}},
		{"data an array", func(s string) []eventstore.Append {
			return []eventstore.Append{withEvent(s, newEvent("ProductAdded", `[{}]`))}
		}},
		{"data a string", func(s string) []eventstore.Append {
			return []eventstore.Append{withEvent(s, newEvent("ProductAdded", `"{}"`))}
		}},
		{"data null", func(s string) []eventstore.Append {
			return []eventstore.Append{withEvent(s, newEvent("ProductAdded", `null`))}
		}},
		{"data malformed", func(s string) []eventstore.Append {
			return []eventstore.Append{withEvent(s, newEvent("ProductAdded", `{"a":}`))}
		}},
		{"data with trailing text", func(s string) []eventstore.Append {
			return []eventstore.Append{withEvent(s, newEvent("ProductAdded", `{} {}`))}
		}},
		{"same stream twice", func(s string) []eventstore.Append { return []eventstore.Append{valid(s), valid(s)} }},
		{"same event id twice", func(s string) []eventstore.Append {
			e := newEvent("ProductAdded", `{}`)
			e.ID = id
			return []eventstore.Append{withEvent(s, e), withEvent(s+"-other", e)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stream := newStreamID("quote")
			// A nil connection shows AppendTx refuses without using it.
			if _, err := store.AppendTx(ctx, nil, tt.appends(stream)...); !errors.Is(err, eventstore.ErrInvalidAppend) {
				t.Errorf("AppendTx: err = %v, want ErrInvalidAppend", err)
			}
			if _, err := store.Append(ctx, tt.appends(stream)...); !errors.Is(err, eventstore.ErrInvalidAppend) {
				t.Errorf("Append: err = %v, want ErrInvalidAppend", err)
			}
			wantVersion(t, store, stream, 0)
			wantVersion(t, store, stream+"-other", 0)
		})
	}
}
