package domain

// DecodeEventJSON is DecodeEvent with encoding/json alone, the reference
// that the hand-written decoder (fastjson.go) must agree with.
func DecodeEventJSON(eventType string, schemaVersion int, data []byte) (Event, error) {
	return decodeEvent(eventType, schemaVersion, data, false)
}

// DecodeEventFast is the hand-written decoder alone, on data of the
// current schema version; ok is false when it declines.
func DecodeEventFast(eventType string, data []byte) (e Event, ok bool) {
	k, known := eventKinds[eventType]
	if !known {
		return nil, false
	}
	return k.fast(data)
}
