package schema

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestLockSharedHoldsOffDrop: shared holders run together; a Drop waits
// until every holder's transaction ended; a holder that comes after the
// Drop fails on the missing tables before it could write anything.
func TestLockSharedHoldsOffDrop(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	ctx := context.Background()
	migrateTenant(t, b.pool, "tenant_lockco")
	tctx := tenantCtx(ctx, "tenant_lockco")

	held := make(chan struct{})
	release := make(chan struct{})
	holderDone := make(chan error, 1)
	go func() {
		holderDone <- InTenant(tctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
			if err := LockShared(ctx, tx); err != nil {
				return err
			}
			// A second shared holder gets the lock at once.
			err := InTenant(ctx, b.pool, func(ctx context.Context, tx2 pgx.Tx) error { return LockShared(ctx, tx2) })
			if err != nil {
				return err
			}
			close(held)
			<-release
			return nil
		})
	}()
	<-held

	dropped := make(chan error, 1)
	go func() { dropped <- Drop(ctx, b.pool, "tenant_lockco") }()
	select {
	case err := <-dropped:
		t.Fatalf("Drop finished (%v) while a shared holder was in its transaction", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-holderDone; err != nil {
		t.Fatalf("holder: %v", err)
	}
	if err := <-dropped; err != nil {
		t.Fatalf("Drop: %v", err)
	}

	err := InTenant(tctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := LockShared(ctx, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT 1 FROM invoices LIMIT 1")
		return err
	})
	if pgCode(err) != "42P01" {
		t.Fatalf("holder after Drop: %v, want relation does not exist", err)
	}
	if err := LockShared(ctx, nil); !errors.Is(err, ErrNoTenant) {
		t.Fatalf("LockShared without a tenant: %v, want ErrNoTenant", err)
	}
}
