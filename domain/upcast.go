package domain

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Upcasting: an event keeps forever the schema version it was written
// with, and readers turn an older version into the current one, one version
// at a time (v1 -> v2 -> ... -> current), before decoding it. Every change
// to an event's JSON is additive; it gets a new schema version, a schema
// file schemas/events/<Type>.v<N>.json, and an upcaster here from the
// version before it.

// upcaster turns data of one schema version of an event type into the next.
type upcaster func(data []byte) ([]byte, error)

type upcastKey struct {
	eventType string
	from      int
}

// upcasters is the registry: the upcaster from a version to the next, per
// event type. The test in upcast_internal_test.go keeps it consistent with
// the current versions of eventKinds.
var upcasters = map[upcastKey]upcaster{
	{"OrderSubmitted", 1}: upcastOrderSubmittedV1,
}

// UnsupportedSchemaError is the refusal to read an event: its type is
// unknown (Current is 0), or this code cannot read its schema version (one
// newer than it knows, 0, or an older one without an upcaster chain).
type UnsupportedSchemaError struct {
	EventType     string
	SchemaVersion int
	Current       int // the current schema version of EventType; 0 for an unknown type
}

func (e *UnsupportedSchemaError) Error() string {
	switch {
	case e.Current == 0:
		return fmt.Sprintf("event type %q is unknown", e.EventType)
	case e.SchemaVersion > e.Current:
		return fmt.Sprintf("%s schema version %d is newer than this code knows (current %d)", e.EventType, e.SchemaVersion, e.Current)
	default:
		return fmt.Sprintf("%s schema version %d is not supported (current %d, and no upcaster from %d)", e.EventType, e.SchemaVersion, e.Current, e.SchemaVersion)
	}
}

// CurrentSchemaVersion is the schema version the system writes for eventType.
func CurrentSchemaVersion(eventType string) (int, bool) {
	k, ok := eventKinds[eventType]
	return k.schemaVersion, ok
}

// SchemaVersions returns the schema versions of eventType that this code
// reads, oldest first: the current one and every older one that upcasts to
// it. It is nil for an unknown type.
func SchemaVersions(eventType string) []int {
	current, ok := CurrentSchemaVersion(eventType)
	if !ok {
		return nil
	}
	oldest := current
	for oldest > 1 && upcasters[upcastKey{eventType, oldest - 1}] != nil {
		oldest--
	}
	out := make([]int, 0, current-oldest+1)
	for v := oldest; v <= current; v++ {
		out = append(out, v)
	}
	return out
}

// Upcast turns data of schemaVersion of eventType into the current schema version; current data comes back as is.
//
// An unknown type, and a version this code cannot read (0, newer than the
// current one, or older without an upcaster chain), is an
// *UnsupportedSchemaError; data that an upcaster cannot read is an error
// naming the type and the versions.
func Upcast(eventType string, schemaVersion int, data []byte) (current int, out []byte, err error) {
	current, ok := CurrentSchemaVersion(eventType)
	if !ok {
		return 0, nil, &UnsupportedSchemaError{EventType: eventType, SchemaVersion: schemaVersion}
	}
	if schemaVersion == current {
		return current, data, nil
	}
	if !slices.Contains(SchemaVersions(eventType), schemaVersion) {
		return current, nil, &UnsupportedSchemaError{EventType: eventType, SchemaVersion: schemaVersion, Current: current}
	}
	out = data
	for v := schemaVersion; v < current; v++ {
		if out, err = upcasters[upcastKey{eventType, v}](out); err != nil {
			return current, nil, fmt.Errorf("upcast %s from schema version %d to %d: %w", eventType, v, v+1, err)
		}
	}
	return current, out, nil
}

// upcastOrderSubmittedV1 adds to each line of OrderSubmitted v1 what v2
// carries: quantity_change (current_quantity - prior_quantity) and
// monthly_change (current_payment - prior_payment), in exact decimal
// arithmetic. Every other field is kept as it was.
func upcastOrderSubmittedV1(data []byte) ([]byte, error) {
	var event map[string]json.RawMessage
	if err := json.Unmarshal(data, &event); err != nil {
		return nil, err
	}
	if event == nil {
		return nil, fmt.Errorf("the data is not a JSON object")
	}
	raw, ok := event["lines"]
	if !ok {
		return nil, fmt.Errorf("lines is missing")
	}
	var lines []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, fmt.Errorf("lines: %w", err)
	}
	for i, line := range lines {
		var l struct {
			ProductCode     string `json:"product_code"`
			PriorQuantity   *int   `json:"prior_quantity"`
			CurrentQuantity *int   `json:"current_quantity"`
			PriorPayment    *Money `json:"prior_payment"`
			CurrentPayment  *Money `json:"current_payment"`
		}
		b, err := json.Marshal(line)
		if err != nil {
			return nil, fmt.Errorf("lines[%d]: %w", i, err)
		}
		if err := json.Unmarshal(b, &l); err != nil {
			return nil, fmt.Errorf("lines[%d]: %w", i, err)
		}
		if l.PriorQuantity == nil || l.CurrentQuantity == nil || l.PriorPayment == nil || l.CurrentPayment == nil {
			return nil, fmt.Errorf("lines[%d] (%s): prior_quantity, current_quantity, prior_payment and current_payment are all required", i, l.ProductCode)
		}
		ol := OrderLine{
			PriorQuantity: *l.PriorQuantity, CurrentQuantity: *l.CurrentQuantity,
			PriorPayment: *l.PriorPayment, CurrentPayment: *l.CurrentPayment,
		}
		if line["quantity_change"], err = json.Marshal(ol.QuantityChange()); err != nil {
			return nil, err
		}
		if line["monthly_change"], err = json.Marshal(ol.MonthlyChange()); err != nil {
			return nil, err
		}
	}
	var err error
	if event["lines"], err = json.Marshal(lines); err != nil {
		return nil, err
	}
	return json.Marshal(event)
}
