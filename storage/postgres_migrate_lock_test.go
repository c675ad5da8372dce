package storage_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// TestMigrateCatalogGivesUpWaitingForATableLock: a catalog migration whose
// ALTER TABLE cannot get its lock (a long transaction reads
// tenancy.tenants) gives up after a bounded lock_timeout, retries a few
// times and then fails naming the situation, instead of waiting in the
// lock queue, where every tenant lookup of every running process queues
// behind its ACCESS EXCLUSIVE request for as long as the long transaction
// lasts.
func TestMigrateCatalogGivesUpWaitingForATableLock(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	ctx := testContext(t)
	pool := newTestPool(t, url)
	// The catalog as release 1 left it, with one tenant.
	if err := storage.MigrateCatalogTo(ctx, pool, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO tenancy.tenants (id, slug, status, schema_name)
		VALUES ('t1', 'acme', 'active', 'tenant_acme')`); err != nil {
		t.Fatal(err)
	}

	// A long transaction (a report, an operator's psql session) holds
	// ACCESS SHARE on tenancy.tenants, which version 2's ALTER TABLE must
	// wait for.
	long, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close(ctx)
	longTx, err := long.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer longTx.Rollback(ctx) //nolint:errcheck
	if _, err := longTx.Exec(ctx, `SELECT count(*) FROM tenancy.tenants`); err != nil {
		t.Fatal(err)
	}

	// A new process starts and migrates the catalog. The bound is far
	// beyond the lock timeout and its retries: without a lock timeout the
	// migration waits and fails with the context's error instead.
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	migrated := make(chan error, 1)
	go func() {
		mctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		migrated <- storage.MigrateCatalogWithLockTimeout(mctx, newTestPool(t, url), logger, 300*time.Millisecond, 3, 100*time.Millisecond)
	}()
	// Wait until its ALTER TABLE waits for the lock (or it gave up already).
	var migErr error
	gotMigErr := false
	testenv.WaitFor(t, 20*time.Second, "the migration to wait for its lock", func() bool {
		select {
		case migErr = <-migrated:
			gotMigErr = true
			return true
		default:
		}
		// In this test's database: the server is shared with other tests.
		n, err := testenv.LockWaiters(ctx, pool, "ALTER TABLE tenancy.tenants")
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	})

	// A running process looks a tenant up: answered while the long
	// transaction is still open (and before the migration's own bound
	// ends its wait).
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var id string
	if err := pool.QueryRow(lctx, `SELECT id FROM tenancy.tenants WHERE slug = 'acme'`).Scan(&id); err != nil || id != "t1" {
		t.Errorf("tenant lookup while the migration waits: %q, %v; want t1 (blocked behind the migration's lock request)", id, err)
	}

	if !gotMigErr {
		migErr = <-migrated
	}
	var pgErr *pgconn.PgError
	if !errors.As(migErr, &pgErr) || pgErr.Code != "55P03" {
		t.Fatalf("MigrateCatalog with tenancy.tenants locked: %v; want lock_not_available (55P03)", migErr)
	}
	t.Logf("start-up error: %v", migErr)
	if msg := migErr.Error(); !strings.Contains(msg, "0002_tenant_limits.sql") || !strings.Contains(msg, "3 attempts") || !strings.Contains(msg, "long transaction") {
		t.Errorf("error %q does not name the migration, the attempts and the long transaction", msg)
	}
	if n := strings.Count(logs.String(), "catalog migration waited too long for a lock"); n != 2 {
		t.Errorf("%d retries logged, want 2:\n%s", n, logs.String())
	}
	var weight bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = 'tenancy' AND table_name = 'tenants' AND column_name = 'weight')`).Scan(&weight); err != nil || weight {
		t.Errorf("tenancy.tenants.weight exists after the failed step: %v, %v", weight, err)
	}

	// Once the long transaction ends, the next start migrates.
	if err := longTx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := storage.MigrateCatalog(ctx, pool, nil); err != nil {
		t.Fatalf("MigrateCatalog after the lock went: %v", err)
	}
	var v int
	if err := pool.QueryRow(ctx, `SELECT max(version) FROM tenancy.schema_migrations`).Scan(&v); err != nil || v != storage.CatalogVersion() {
		t.Errorf("catalog version %d, %v; want %d", v, err, storage.CatalogVersion())
	}
}
