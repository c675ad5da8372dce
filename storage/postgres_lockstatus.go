package storage

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/tenantctx"
)

// LockTenantStatus reads the status of tenant id in tx, a transaction on
// the catalog's database, and keeps the row share-locked until tx ends:
// a status change (SetStatus locks the row for update) waits for tx, so
// what tx does on the strength of the status commits before the status can
// change. No cache is involved. ErrNotFound when there is no such tenant.
//
// The tenant lifecycle uses it to create a schema only for a tenant that
// is still provisioning (P17 in docs/architecture.md).
func LockTenantStatus(ctx context.Context, tx pgx.Tx, id string) (tenantctx.Status, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return "", fmt.Errorf("lock tenant status: %w: %w", ErrNotFound, err)
	}
	var status string
	err := tx.QueryRow(ctx, `SELECT status FROM tenancy.tenants WHERE id = $1 FOR SHARE`, id).Scan(&status)
	if err != nil {
		return "", fmt.Errorf("lock status of tenant %s: %w", id, translatePgError(err))
	}
	return tenantctx.Status(status), nil
}
