// Package eventstore keeps every event of every stream in one PostgreSQL
// table and offers the three things the rest of the system needs from it:
// appending with an expected version, loading a stream, and following the
// global log in commit order.
//
// # Expected versions
//
// Writers decide against the state they loaded, so an append states the
// version it expects the stream to be at (the version of its last event, or
// NoStream). The check and the insert are one statement: it inserts only when
// the stream's current version equals the expected one, and the unique key on
// (stream_id, version) stops the writer that loses a race between the two.
// Either way the caller gets a *VersionConflictError (errors.Is
// ErrVersionConflict), reloads and decides again; nothing is ever half
// written, and appends to several streams commit together or not at all.
//
// # Why the log cursor is (transaction id, position)
//
// position is an identity column, handed out when a row is inserted, but
// transactions commit in another order: a transaction that took position 10
// can commit after one that took 11. A reader that remembers "the last
// position I saw" would then skip 10 for ever. Every event therefore records
// the id of the transaction that wrote it (pg_current_xact_id(), an xid8),
// and ReadLog returns only events of transactions below the snapshot's xmin,
// every one of which has finished, ordered by (transaction_id, position). A
// transaction that is still running holds xmin down, so nothing can commit
// behind a reader's Cursor. The price is that a long-open transaction stalls
// readers until it ends, which is why deployments set
// idle_in_transaction_session_timeout.
//
// # Hash chain
//
// Every event carries Hash: SHA-256 over a canonical encoding of the event
// (upsell.event.v1, see hash.go and docs/audit.md) and the previous event's
// hash in its stream. The append computes it in its own INSERT, with the
// SQL function upsell_event_hash of migration 005; EventHash and
// VerifyChain recompute it in Go, so a verification never trusts the
// database's own function. Editing, deleting or reordering a recorded event
// breaks the chain from there on; VerifyStream and VerifyAll report the
// first bad event as a *ChainError.
//
// This package must never import the domain: it stores events as opaque JSON
// and knows nothing of quotes or customers.
package eventstore
