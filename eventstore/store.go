package eventstore

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DBTX is what the store needs from a connection. pgx.Tx, *pgx.Conn and
// *pgxpool.Pool satisfy it, so the Tx variants run inside a caller's
// transaction and commit with whatever else it writes.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Store is the event store on one PostgreSQL database, migrated with
// package migrations. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	group   *committer // nil: AppendCommit never groups
	onGroup func(members int, refused bool)
	merged  map[string]string // WithMerged: a statement's text, and its merged form
}

// New returns a store on pool.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{pool: pool}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Pool returns the pool the store uses, for callers that begin the
// transactions they pass to AppendTx.
func (s *Store) Pool() *pgxpool.Pool {
	return s.pool
}
