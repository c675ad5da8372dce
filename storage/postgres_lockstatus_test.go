package storage_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestLockTenantStatusHoldsOffStatusChanges: the status read by
// LockTenantStatus cannot change until its transaction ends; an unknown
// tenant is ErrNotFound.
func TestLockTenantStatusHoldsOffStatusChanges(t *testing.T) {
	t.Parallel()
	b := setupPostgres(t)
	ctx := testContext(t)
	tn, err := tenantctx.New("locked", "Locked", "free")
	if err != nil {
		t.Fatal(err)
	}
	if tn, err = b.catalog.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := storage.LockTenantStatus(ctx, tx, tenantctx.NewID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("LockTenantStatus of an unknown tenant = %v, want ErrNotFound", err)
	}
	status, err := storage.LockTenantStatus(ctx, tx, tn.ID)
	if err != nil || status != tenantctx.StatusProvisioning {
		t.Fatalf("LockTenantStatus = %s, %v; want provisioning", status, err)
	}
	changed := make(chan error, 1)
	go func() {
		_, err := b.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusDeleting)
		changed <- err
	}()
	select {
	case err := <-changed:
		t.Fatalf("SetStatus returned (%v) while the status was locked", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-changed; err != nil {
		t.Fatalf("SetStatus after the lock ended: %v", err)
	}
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		status, err = storage.LockTenantStatus(ctx, tx, tn.ID)
		return err
	})
	if err != nil || status != tenantctx.StatusDeleting {
		t.Fatalf("LockTenantStatus after the change = %s, %v; want deleting", status, err)
	}
}
