// Package domain is the heart of Upsell: the ChangeQuote and Customer
// aggregates, catalog pricing and money.
//
// It is pure Go with no I/O. A command is decided against the current state
// of an aggregate and records new events; state changes only by applying
// events, so replaying a stream's events rebuilds exactly the state that
// decided them. Time is never read here: callers pass the instant from an
// injected Clock, so tests and audits replay deterministically.
//
// Every refusal is an *Error with a stable Code (the codes of the HTTP
// contract), matched with errors.Is against the Err* values or errors.As.
//
// This package must never import the event store, the database, HTTP or any
// other adapter: they depend on it, never the reverse.
package domain
