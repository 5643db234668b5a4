// Package projections holds the read models projected from the event log:
// the Preview Change Quote and the Change Order Summary of every quote
// (table quote_views), and the customer list and customer detail (table
// customer_views). Queries read them; nothing here decides anything.
//
// Two ways to keep a read model current, one per need:
//
//   - Inline: Inline is an app.TxHook, so the rows a command's events lead
//     to are written in the transaction that appends them. A read right
//     after a command shows its effect. Quotes are projected only this way.
//   - Asynchronously: a Runner follows the log with the event store's
//     cursor and writes rows and its checkpoint in one transaction, in
//     batches, so every event is applied exactly once. One instance runs
//     each projector at a time (a session advisory lock held by the
//     connection that writes); when it dies, a standby takes over.
//     Customers are projected this way, because imports append customers
//     without the application layer, and also inline for commands, so that
//     a submitted order shows at once whatever the projector's lag.
//
// Every projection is a pure function of its streams' events, and every
// write is an upsert guarded by the stream version, so applying an event
// twice is harmless. Rebuild uses that: it builds a projection's table
// beside the live one from the whole log, catches up under a lock, and
// swaps the tables in one transaction, so the API never goes down.
//
// This package must never be imported by the domain or the event store.
package projections
