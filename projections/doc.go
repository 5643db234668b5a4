// Package projections will hold the read models projected from the event
// log: the Preview Change Quote, the Change Order Summary, the customer list
// and the saved quotes.
//
// The seams are in place: app.WithTxHook runs a projection inside the
// transaction that appends a command's events (an inline read model that the
// caller reads right after its own write), and eventstore.Store.ReadLog
// follows the whole log in commit order for asynchronous projectors that
// store their rows and their checkpoint in one transaction. Until then the
// domain computes both views from a quote's events (domain.ChangeQuote's
// Preview and Summary).
//
// This package must never be imported by the domain or the event store.
package projections
