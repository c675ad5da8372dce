package schema

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// sharedLockSQL takes the tenant's lock in shared mode: any number of
// holders at once, but not together with Migrate or Drop, which
// take it exclusively (lockSQL).
const sharedLockSQL = "SELECT pg_catalog.pg_advisory_xact_lock_shared($1::int4, pg_catalog.hashtext($2))"

// LockShared takes the tenant's lock in shared mode inside tx, an InTenant
// transaction, until it ends. Use it in work that writes outside the
// database on the tenant's behalf (a document file) and then records that in
// the schema: a concurrent Drop waits for the writer to finish, so what the
// writer stored is removed with the tenant; a writer that comes after the
// Drop finds its tables gone ("relation does not exist") before it writes
// anything. The schema comes from the tenant in ctx.
func LockShared(ctx context.Context, tx pgx.Tx) error {
	t, err := tenantFrom(ctx, "lock tenant")
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sharedLockSQL, lockNamespace, t.Schema); err != nil {
		return fmt.Errorf("lock tenant %s shared: %w", t.ID, err)
	}
	return nil
}
