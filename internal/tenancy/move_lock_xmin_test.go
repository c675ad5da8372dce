package tenancy_test

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
)

// TestMoveLockHoldsNoSnapshot: a move holds its lock in a transaction kept
// open in the catalog's database for the whole move (the wait for running
// tasks, the copy, the grace period). lockMove says that transaction
// "takes no snapshot between statements": an idle transaction that held
// one would keep the catalog database's xmin horizon (pg_stat_activity's
// backend_xmin) for the whole move, so VACUUM could remove no row that
// died meanwhile in that database, though the move copies between two
// others. The lock statement sent with the extended protocol left the
// backend's xmin set.
func TestMoveLockHoldsNoSnapshot(t *testing.T) {
	t.Parallel()
	testMoveLockHoldsNoSnapshot(t, "")
}

// TestMoveLockHoldsNoSnapshotOnARepeatableReadCatalog: on a catalog
// database whose default_transaction_isolation is repeatable read or
// serializable (an operator's ALTER DATABASE), the move lock's transaction
// holds no snapshot either: it runs at read committed. At the database's
// default, its lock statement took the transaction's snapshot, which
// repeatable read and serializable keep until the transaction ends, and
// the catalog database's xmin horizon was held for the whole move.
func TestMoveLockHoldsNoSnapshotOnARepeatableReadCatalog(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			testMoveLockHoldsNoSnapshot(t, level)
		})
	}
}

// testMoveLockHoldsNoSnapshot is TestMoveLockHoldsNoSnapshot on a catalog
// database whose default_transaction_isolation is level ("": as it is).
func testMoveLockHoldsNoSnapshot(t *testing.T, level string) {
	b := setupServers(t, true)
	acme := b.provision(t, "acme", "second")
	if level != "" {
		setDatabaseDefault(t, b.ctx, b.pool, "default_transaction_isolation", level)
	}

	var checked bool
	opts := tenancy.WithBeforeSwitch(tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 5 * time.Second, Poll: 10 * time.Millisecond},
		func(ctx context.Context) error {
			// The catalog's database is on the other server than the move's
			// source and target: its one transaction left open is the lock's.
			rows, err := b.pool.Query(ctx, `SELECT coalesce(backend_xmin::text, 'NULL') FROM pg_catalog.pg_stat_activity
				 WHERE datname = current_database() AND state = 'idle in transaction' AND query LIKE '%advisory_xact_lock%'`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var xmin string
				if err := rows.Scan(&xmin); err != nil {
					return err
				}
				checked = true
				if xmin != "NULL" {
					t.Errorf("the move lock's open transaction holds the catalog database's xmin horizon: backend_xmin %s, want NULL", xmin)
				}
			}
			return rows.Err()
		})
	if _, err := b.svc.Move(b.ctx, acme.ID, "third", "test", opts); err != nil {
		t.Fatal(err)
	}
	if !checked {
		t.Fatal("no idle transaction holding the move lock in the catalog's database")
	}
}
