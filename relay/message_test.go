package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/upsell-dev/upsell/billing"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/relay"
	"github.com/upsell-dev/upsell/schemas"
)

// sharedStore is the package's shared database, for tests that only read
// back events of their own streams and run no relay.
func sharedStore(t *testing.T) *eventstore.Store {
	t.Helper()
	return eventstore.New(testdb.Pool(t, "relay"))
}

// stored appends one event to a new stream and reads it back as the log
// gives it to the relay (data as jsonb stores it).
func stored(t *testing.T, store *eventstore.Store, streamType string, e eventstore.NewEvent) eventstore.Event {
	t.Helper()
	ctx := context.Background()
	stream := streamType + "-" + uuid.NewString()
	if _, err := store.Append(ctx, eventstore.Append{StreamID: stream, StreamType: streamType, ExpectedVersion: eventstore.NoStream,
		Events: []eventstore.NewEvent{e}}); err != nil {
		t.Fatal(err)
	}
	events, err := store.Load(ctx, stream, eventstore.LoadOptions{})
	if err != nil || len(events) != 1 {
		t.Fatalf("load %s: %d events, %v", stream, len(events), err)
	}
	return events[0]
}

// jsonEqual compares JSON by value, numbers exactly.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	decode := func(data []byte) any {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("not JSON: %v: %s", err, data)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

var ceTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

// The message of an event: UUID = event id, payload = data, and every
// metadata key with its value, CloudEvents names first.
func TestMessageOfAnEvent(t *testing.T) {
	t.Parallel()
	store := sharedStore(t)
	typ, ver, data, err := domain.EncodeEvent(domain.SeatsChanged{ProductCode: "EMAIL-SEC", TermType: "12 Month",
		PriorSeats: 682, PreviousSeats: 682, NewSeats: 700, UnitPrice: domain.MustMoney("3.20")})
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.Must(uuid.NewV7())
	e := stored(t, store, domain.StreamChangeQuote, eventstore.NewEvent{ID: id, Type: typ, SchemaVersion: ver, Data: data,
		Metadata: eventstore.Metadata{MSPID: "msp-northwind", UserID: "u-alex", CorrelationID: "corr-7f3a", CausationID: "req-91b2"}})

	m, err := relay.NewMessage(e)
	if err != nil {
		t.Fatal(err)
	}
	if m.UUID != id.String() {
		t.Errorf("UUID %s, want the event id %s", m.UUID, id)
	}
	if !jsonEqual(t, m.Payload, data) || !bytes.Equal(m.Payload, e.Data) {
		t.Errorf("payload %s, want the event's data %s", m.Payload, e.Data)
	}
	want := map[string]string{
		"ce_specversion":        "1.0",
		"ce_id":                 id.String(),
		"ce_type":               "SeatsChanged",
		"ce_source":             "urn:upsell:change_quote",
		"ce_subject":            e.StreamID,
		"ce_time":               m.Metadata.Get("ce_time"), // checked below
		"ce_datacontenttype":    "application/json",
		"ce_dataschema":         "urn:upsell:schema:SeatsChanged:v1",
		"upsell_stream_type":    "change_quote",
		"upsell_stream_version": "1",
		"upsell_position":       strconv.FormatInt(e.Position, 10),
		"upsell_transaction_id": strconv.FormatUint(e.TransactionID, 10),
		"upsell_schema_version": "1",
		"upsell_correlation_id": "corr-7f3a",
		"upsell_causation_id":   "req-91b2",
		"upsell_actor_msp_id":   "msp-northwind",
		"upsell_actor_user_id":  "u-alex",
	}
	got := map[string]string(m.Metadata)
	delete(got, relay.MetaHash) // TestMessageCarriesTheChainHash
	if !maps.Equal(got, want) {
		t.Errorf("metadata:\n got %v\nwant %v", got, want)
	}
	// The constants name those keys.
	for k, v := range map[string]string{
		relay.MetaSpecVersion: "ce_specversion", relay.MetaID: "ce_id", relay.MetaType: "ce_type", relay.MetaSource: "ce_source",
		relay.MetaSubject: "ce_subject", relay.MetaTime: "ce_time", relay.MetaContentType: "ce_datacontenttype",
		relay.MetaDataSchema: "ce_dataschema", relay.MetaStreamType: "upsell_stream_type", relay.MetaStreamVersion: "upsell_stream_version",
		relay.MetaPosition: "upsell_position", relay.MetaTransactionID: "upsell_transaction_id", relay.MetaSchemaVersion: "upsell_schema_version",
		relay.MetaCorrelationID: "upsell_correlation_id", relay.MetaCausationID: "upsell_causation_id",
		relay.MetaActorMSPID: "upsell_actor_msp_id", relay.MetaActorUserID: "upsell_actor_user_id", relay.MetaHash: "upsell_hash",
	} {
		if k != v {
			t.Errorf("constant %q, want %q", k, v)
		}
	}
	ts := m.Metadata.Get("ce_time")
	if !ceTime.MatchString(ts) {
		t.Errorf("ce_time %q is not RFC 3339 UTC with microseconds", ts)
	}
	if at, err := time.Parse(time.RFC3339Nano, ts); err != nil || !at.Equal(e.RecordedAt) {
		t.Errorf("ce_time %q (%v), want recorded_at %s", ts, err, e.RecordedAt.UTC().Format(time.RFC3339Nano))
	}
	if m.Metadata.Get("ce_dataschema") != schemas.ID("SeatsChanged", 1) {
		t.Errorf("ce_dataschema %q is not the schema's $id %q", m.Metadata.Get("ce_dataschema"), schemas.ID("SeatsChanged", 1))
	}
	if err := schemas.Validate("SeatsChanged", 1, m.Payload); err != nil {
		t.Errorf("the payload does not match the schema it names: %v", err)
	}

	env, err := relay.ParseEnvelope(m)
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := relay.Envelope{EventID: id.String(), Type: "SeatsChanged", StreamID: e.StreamID, StreamType: "change_quote",
		StreamVersion: 1, Position: e.Position, SchemaVersion: 1, Time: env.Time}
	if env != wantEnv || !env.Time.Equal(e.RecordedAt) {
		t.Errorf("ParseEnvelope = %+v\nwant %+v (time %s)", env, wantEnv, e.RecordedAt)
	}

	// Without metadata, the optional keys are absent, not empty.
	bare := stored(t, store, "relaytest", eventstore.NewEvent{Type: testEvent, Data: json.RawMessage(`{"n": 1}`)})
	m, err = relay.NewMessage(bare)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"upsell_correlation_id", "upsell_causation_id", "upsell_actor_msp_id", "upsell_actor_user_id"} {
		if _, ok := m.Metadata[k]; ok {
			t.Errorf("an event without metadata has %s = %q", k, m.Metadata[k])
		}
	}
	// A type the domain does not know goes out as stored, at its version.
	if m.Metadata.Get("ce_type") != testEvent || m.Metadata.Get("upsell_schema_version") != "1" ||
		m.Metadata.Get("ce_dataschema") != "urn:upsell:schema:"+testEvent+":v1" || !bytes.Equal(m.Payload, bare.Data) ||
		m.Metadata.Get("ce_source") != "urn:upsell:relaytest" {
		t.Errorf("an unknown event type: metadata %v, payload %s", m.Metadata, m.Payload)
	}
}

// The envelope of a message without the relay's metadata is an error that
// names the key.
func TestParseEnvelopeRefusals(t *testing.T) {
	t.Parallel()
	e := eventstore.Event{ID: uuid.New(), StreamID: "s-1", StreamType: "relaytest", Version: 3, Position: 42, TransactionID: 900,
		Type: testEvent, SchemaVersion: 1, Data: json.RawMessage(`{}`), RecordedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)}
	good, err := relay.NewMessage(e)
	if err != nil {
		t.Fatal(err)
	}
	if env, err := relay.ParseEnvelope(good); err != nil || env.StreamVersion != 3 || env.Position != 42 ||
		!env.Time.Equal(e.RecordedAt) || good.Metadata.Get("ce_time") != "2026-01-02T03:04:05.000006Z" {
		t.Fatalf("ParseEnvelope = %+v, %v; ce_time %q", env, err, good.Metadata.Get("ce_time"))
	}
	for _, tc := range []struct {
		key, value string // value "" deletes the key
	}{
		{"ce_id", ""}, {"ce_type", ""}, {"ce_subject", ""}, {"upsell_stream_type", ""},
		{"upsell_stream_version", ""}, {"upsell_stream_version", "three"},
		{"upsell_position", "-x"}, {"upsell_schema_version", ""}, {"ce_time", "yesterday"},
	} {
		m := message.NewMessage(good.UUID, good.Payload)
		maps.Copy(m.Metadata, good.Metadata)
		if tc.value == "" {
			delete(m.Metadata, tc.key)
		} else {
			m.Metadata[tc.key] = tc.value
		}
		if _, err := relay.ParseEnvelope(m); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s = %q: err = %v, want an error naming %s", tc.key, tc.value, err, tc.key)
		}
	}
	if _, err := relay.ParseEnvelope(message.NewMessage("x", nil)); err == nil || !strings.Contains(err.Error(), "not an upsell event") {
		t.Errorf("a foreign message: err = %v", err)
	}
}

// An OrderSubmitted stored at schema version 1 is published upcast to
// version 2: the payload carries the per-line deltas, the metadata says v2
// and names the v2 schema, and billing reads it.
func TestMessageUpcastsOrderSubmittedV1(t *testing.T) {
	t.Parallel()
	v1, err := os.ReadFile("../schemas/testdata/OrderSubmitted.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.Validate("OrderSubmitted", 1, v1); err != nil {
		t.Fatalf("the v1 sample is not v1: %v", err)
	}
	store := sharedStore(t)
	e := stored(t, store, domain.StreamChangeQuote, eventstore.NewEvent{Type: "OrderSubmitted", SchemaVersion: 1, Data: v1})
	if e.SchemaVersion != 1 {
		t.Fatalf("stored at schema version %d", e.SchemaVersion)
	}
	m, err := relay.NewMessage(e)
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Metadata.Get("upsell_schema_version"); v != "2" {
		t.Errorf("upsell_schema_version %q, want 2", v)
	}
	if s := m.Metadata.Get("ce_dataschema"); s != "urn:upsell:schema:OrderSubmitted:v2" || s != schemas.ID("OrderSubmitted", 2) {
		t.Errorf("ce_dataschema %q, want urn:upsell:schema:OrderSubmitted:v2", s)
	}
	if err := schemas.Validate("OrderSubmitted", 2, m.Payload); err != nil {
		t.Errorf("the payload is not OrderSubmitted v2: %v\n%s", err, m.Payload)
	}
	_, up, err := domain.Upcast("OrderSubmitted", 1, e.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, m.Payload, up) {
		t.Errorf("payload %s\nwant the upcast %s", m.Payload, up)
	}
	var p struct {
		Lines []struct {
			ProductCode    string      `json:"product_code"`
			QuantityChange json.Number `json:"quantity_change"`
			MonthlyChange  string      `json:"monthly_change"`
		} `json:"lines"`
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range p.Lines {
		lines = append(lines, l.ProductCode+" "+l.QuantityChange.String()+" "+l.MonthlyChange)
	}
	if want := []string{"EMAIL-SEC 18 23.50", "ARCHIVE 0 0.00", "AWARENESS 700 875.00"}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
	// The stored event is untouched: the log keeps v1.
	again, err := store.Load(context.Background(), e.StreamID, eventstore.LoadOptions{})
	if err != nil || again[0].SchemaVersion != 1 || !bytes.Equal(again[0].Data, e.Data) {
		t.Errorf("the stored event changed: %+v, %v", again, err)
	}

	// Downstream billing, which reads only v2, takes it.
	var orders []billing.Order
	c := billing.NewConsumer(10, func(_ context.Context, o billing.Order) error { orders = append(orders, o); return nil })
	if err := c.Process(context.Background(), m); err != nil {
		t.Fatalf("billing refused the upcast message: %v", err)
	}
	if len(orders) != 1 || orders[0].QuoteID != e.StreamID || len(orders[0].Lines) != 3 ||
		orders[0].Lines[0].QuantityChange != 18 || !orders[0].Lines[0].MonthlyChange.Equal(decimal.RequireFromString("23.50")) ||
		orders[0].Lines[2].QuantityChange != 700 || !orders[0].MonthlyDifference.Equal(decimal.RequireFromString("898.50")) {
		t.Errorf("billing read %+v", orders)
	}
}

// Data an upcaster cannot read is an error naming the event, not a
// message: the relay stops there rather than skip the event.
func TestMessageOfUnreadableOldData(t *testing.T) {
	t.Parallel()
	e := eventstore.Event{ID: uuid.New(), StreamID: "quote-x", StreamType: domain.StreamChangeQuote, Version: 7, Type: "OrderSubmitted",
		SchemaVersion: 1, Data: json.RawMessage(`{"customer_id": "c"}`)}
	m, err := relay.NewMessage(e)
	if err == nil || m != nil || !strings.Contains(err.Error(), e.ID.String()) || !strings.Contains(err.Error(), "quote-x") {
		t.Errorf("NewMessage of v1 data without lines = %v, %v; want an error naming the event", m, err)
	}
}

// Every message carries the event's chain hash (upsell_hash, hex), as the
// constant MetaHash documents: an anchor outside the database for auditors.
func TestMessageCarriesTheChainHash(t *testing.T) {
	t.Parallel()
	store := sharedStore(t)
	e := stored(t, store, "relaytest", eventstore.NewEvent{Type: testEvent, Data: json.RawMessage(`{"n": 2}`)})
	var hash *string
	if err := store.Pool().QueryRow(context.Background(), `SELECT encode(hash, 'hex') FROM events WHERE event_id = $1`, e.ID).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if hash == nil || len(*hash) != 64 {
		t.Fatalf("the stored event has hash %v", hash)
	}
	m, err := relay.NewMessage(e)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Metadata.Get(relay.MetaHash); got != *hash {
		t.Errorf("%s = %q, want the stored chain hash %s", relay.MetaHash, got, *hash)
	}
}
