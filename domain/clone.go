package domain

import (
	"maps"
	"slices"
)

// Clone returns a copy of q as stored at q.Version(): a command on the copy
// changes nothing of q's (the lines it edits in place are copied), and the
// copy has no recorded changes, so it appends at q.Version(). What the two
// still share (the opened event's baseline, the review, acknowledgement and
// submission events) apply only ever replaces, never edits.
//
// It lets the application layer keep a quote in memory between commands
// and read only the events appended since (see app's quote cache).
func (q *ChangeQuote) Clone() *ChangeQuote {
	c := *q
	c.changed = maps.Clone(q.changed)
	c.added = slices.Clone(q.added)
	c.stream = stream{version: q.version}
	return &c
}
