package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// catalogIsolations are the default_transaction_isolation values above
// read committed that an operator may give the catalog database (ALTER
// DATABASE, or a role's setting); the catalog's writes that wait for
// another transaction are tested at each.
var catalogIsolations = []string{"repeatable read", "serializable"}

// setDefaultIsolation sets the default_transaction_isolation of pool's
// database to level: sessions opened afterwards begin each transaction at
// level unless it asks for another.
func setDefaultIsolation(t *testing.T, ctx context.Context, pool *pgxpool.Pool, level string) {
	t.Helper()
	if _, err := pool.Exec(ctx, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), '"+level+"'); END$$"); err != nil {
		t.Fatal(err)
	}
}

// catalogAt returns a migrated catalog on a fresh database whose
// default_transaction_isolation is level: every connection of its pool
// begins each transaction at level unless it asks for another.
func catalogAt(t *testing.T, level string) postgresBundle {
	t.Helper()
	b := setupPostgres(t)
	setDefaultIsolation(t, testContext(t), b.pool, level)
	b.pool.Reset() // new connections take the setting
	return b
}

// inFlight begins a transaction on b's pool: what it writes stays in
// flight, its locks held, until the test commits it. It is rolled back
// when the test ends if the test did not commit it.
func inFlight(t *testing.T, ctx context.Context, b postgresBundle) pgx.Tx {
	t.Helper()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
	return tx
}

// keyIssuanceInFlight stores a new API key of tenantID in a transaction
// in flight (inFlight): the key is issued when the test commits tx.
func keyIssuanceInFlight(t *testing.T, ctx context.Context, b postgresBundle, tenantID string) (key string, tx pgx.Tx) {
	t.Helper()
	key, _ = storage.NewAPIKey()
	tx = inFlight(t, ctx, b)
	if err := storage.StoreAPIKeyIn(ctx, tx, tenantID, key); err != nil {
		t.Fatalf("the issuance in flight: %v", err)
	}
	return key, tx
}

// waitForLockWaiter waits until a session of b's own database (the
// server is shared) waits for a lock in a statement whose text contains
// stmt ("" for any), failing the test after 30 s naming what.
func waitForLockWaiter(t *testing.T, ctx context.Context, b postgresBundle, what, stmt string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, what, func() bool {
		n, err := testenv.LockWaiters(ctx, b.pool, stmt)
		return err == nil && n > 0
	})
}

// commitAfterItWaits runs op while tx is in flight, waits until op waits
// for one of tx's locks (waitForLockWaiter: what and stmt), commits tx and
// returns op's error: op ran the rest of its work after tx committed.
func commitAfterItWaits(t *testing.T, ctx context.Context, b postgresBundle, tx pgx.Tx, what, stmt string, op func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- op() }()
	waitForLockWaiter(t, ctx, b, what, stmt)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return <-done
}
