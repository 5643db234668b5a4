package eventstore

import "encoding/json"

// decodeMetadata reads an event's metadata as json.Unmarshal into m would.
// The metadata the service writes, as jsonb prints it, is an object of a
// few of the four keys with plain ASCII string values: those are read here
// directly, in a sixth of json.Unmarshal's time (BenchmarkDecodeMetadata),
// which reading the log for the relay and the projectors pays on every
// event. Anything else (another key, an escape, a non-ASCII byte, a null,
// malformed JSON) goes to json.Unmarshal.
func decodeMetadata(raw []byte, m *Metadata) error {
	if fastMetadata(raw, m) {
		return nil
	}
	*m = Metadata{}
	return json.Unmarshal(raw, m)
}

// fastMetadata fills m from raw when raw is an object of known keys with
// plain ASCII string values, each key and value without escapes, and says
// whether it did; it may have set fields of m when it did not.
func fastMetadata(raw []byte, m *Metadata) bool {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return skipSpace(raw, i+1) == len(raw)
	}
	for {
		key, next, ok := plainString(raw, i)
		if !ok {
			return false
		}
		i = skipSpace(raw, next)
		if i >= len(raw) || raw[i] != ':' {
			return false
		}
		value, next, ok := plainString(raw, skipSpace(raw, i+1))
		if !ok {
			return false
		}
		switch string(key) {
		case "msp_id":
			m.MSPID = string(value)
		case "user_id":
			m.UserID = string(value)
		case "correlation_id":
			m.CorrelationID = string(value)
		case "causation_id":
			m.CausationID = string(value)
		default:
			return false
		}
		i = skipSpace(raw, next)
		if i >= len(raw) {
			return false
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case '}':
			return skipSpace(raw, i+1) == len(raw)
		default:
			return false
		}
	}
}

// plainString reads the JSON string at raw[i] when it is printable ASCII
// without escapes: its contents and the index after its closing quote.
func plainString(raw []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(raw) || raw[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(raw); j++ {
		switch c := raw[j]; {
		case c == '"':
			return raw[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}
