// Package projections holds the read models projected from the event log:
// the Preview Change Quote and the Change Order Summary of every quote
// (table quote_views), and the customer list and customer detail (table
// customer_views). Queries read them; nothing here decides anything.
//
// Two ways to keep a read model current, one per need:
//
//   - Quotes are projected inline: Inline is an app.TxHook, so a quote's
//     row is written in the transaction that appends its events. A read
//     right after a command shows its effect, and a row can never be ahead
//     of or behind the events.
//   - Customers are projected asynchronously: a Runner follows the log with
//     the event store's cursor and writes rows and its checkpoint in one
//     transaction, in batches, so every event is applied exactly once. One
//     instance runs each projector at a time (a session advisory lock held
//     by the connection that writes); when it dies, a standby takes over.
//     A command that changed a customer waits (WaitFor) until the projector
//     has passed its events, so its caller reads its own write there too.
//
// Every projection is a pure function of its streams' events, and every
// write is an upsert guarded by the stream version, so applying an event
// twice is harmless. Rebuild uses that: it builds a projection's table
// beside the live one from the whole log, catches up under a lock, and
// swaps the tables in one transaction, so the API never goes down.
//
// This package must never be imported by the domain or the event store.
package projections
