package storage

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/tenantctx"
)

// CatalogMigrations returns the number of embedded catalog migrations
// (versions need not be contiguous).
func CatalogMigrations() int {
	ms, err := loadCatalogMigrations()
	if err != nil {
		return -1
	}
	return len(ms)
}

// MigrateCatalogTo applies the embedded catalog migrations up to version
// (a catalog as an older release left it).
func MigrateCatalogTo(ctx context.Context, pool *pgxpool.Pool, version int) error {
	ms, err := loadCatalogMigrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.version > version {
			break
		}
		if _, err := applyMigration(ctx, pool, m, defaultCatalogLockPolicy.timeout); err != nil {
			return err
		}
	}
	return nil
}

// MigrateCatalogWithLockTimeout is MigrateCatalog with a step's
// lock_timeout, its attempts and the backoff between them set.
func MigrateCatalogWithLockTimeout(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, lockTimeout time.Duration, attempts int, backoff time.Duration) error {
	return migrateCatalog(ctx, pool, logger, catalogLockPolicy{timeout: lockTimeout, attempts: attempts, backoff: backoff})
}

// CreateTenantIn runs CreateTenant's statement for t in tx, so a test can
// hold a creation uncommitted, as PostgreSQL still runs one whose caller
// gave up on its answer.
func CreateTenantIn(ctx context.Context, tx pgx.Tx, t tenantctx.Tenant) error {
	_, err := tx.Exec(ctx, createTenantSQL, createTenantArgs(t)...)
	return err
}

// StoreAPIKeyIn runs StoreAPIKey's statement for key of tenant tenantID
// in tx, so a test can hold an issuance uncommitted, as PostgreSQL still
// runs one whose caller gave up on its answer.
func StoreAPIKeyIn(ctx context.Context, tx pgx.Tx, tenantID, key string) error {
	_, err := tx.Exec(ctx, issueAPIKeySQL, tenantID, HashAPIKey(key), APIKeyDisplayPrefix(key))
	return err
}

// LockAuditIn takes, in tx, the advisory lock AppendAuditOnce and
// AppendAuditUnlessLatest take on a tenant's action, so a test can hold
// another append of it uncommitted.
func LockAuditIn(ctx context.Context, tx pgx.Tx, tenantID, action string) error {
	_, err := tx.Exec(ctx, auditLockSQL, auditLockKey(tenantID, action))
	return err
}
