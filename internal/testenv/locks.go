package testenv

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Querier is what LockWaiters asks: a *pgx.Conn or a *pgxpool.Pool.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// LockWaiters counts the sessions of q's own database that wait for a lock
// (pg_stat_activity's wait_event_type "Lock") in a statement whose text
// contains stmt ("" for any), of one of kinds (its wait_event: "advisory",
// "relation", "transactionid", "tuple", ...; any kind when none is given).
//
// A test waiting for its own lock waiter must count this way, not with
// pg_locks WHERE NOT granted: the server is shared by every test of the
// binary, and another test's waiter, in another database, would end the
// wait before the test's own session waits. pg_locks names no database for
// a transaction id wait; pg_stat_activity names the waiter's.
//
// q must not be in a transaction: pg_stat_activity is read once per
// transaction, so a count in one would never change.
func LockWaiters(ctx context.Context, q Querier, stmt string, kinds ...string) (int, error) {
	if kinds == nil {
		kinds = []string{}
	}
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_stat_activity
		WHERE datname = pg_catalog.current_database() AND wait_event_type = 'Lock'
		  AND (pg_catalog.cardinality($2::text[]) = 0 OR wait_event = ANY($2::text[]))
		  AND pg_catalog.strpos(query, $1) > 0`, stmt, kinds).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count lock waiters: %w", err)
	}
	return n, nil
}
