package domain

import (
	"fmt"
	"slices"
)

// stream is what every aggregate keeps of its event stream: the version
// reached (including recorded, not yet stored, events) and the events
// recorded since it was loaded.
type stream struct {
	version int64
	changes []Event
}

// Version is the version of the stream including recorded, not yet stored,
// events.
func (s *stream) Version() int64 { return s.version }

// ExpectedVersion is the version the stream had when loaded: the one to
// append at.
func (s *stream) ExpectedVersion() int64 { return s.version - int64(len(s.changes)) }

// Changes returns the events recorded since the aggregate was loaded.
func (s *stream) Changes() []Event { return slices.Clone(s.changes) }

// record applies a new event and keeps it to be stored. A command only
// records events it has checked, so apply refusing one is a bug here.
func (s *stream) record(e Event, apply func(Event) error) {
	if err := apply(e); err != nil {
		panic(fmt.Sprintf("recording %s: %v", e.EventType(), err))
	}
	s.changes = append(s.changes, e)
}
