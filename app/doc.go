// Package app is the application layer: each command is one unit of work
// that loads an aggregate from its events, lets the domain decide, and
// appends the new events at the version it loaded. When a concurrent writer
// got there first (a version conflict), the decision is re-run on fresh
// state a bounded number of times; a command that named the version it
// expects (If-Match) then fails with ErrPreconditionFailed instead of being
// applied to a state its caller never saw.
//
// It is the only package that joins the domain to the event store; the HTTP
// handlers, the CLI and the demo all go through it.
package app
