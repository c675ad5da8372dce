package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// createAckLost commits CreateTenant in PostgreSQL and then reports the
// connection reset, as a client sees a COMMIT whose answer was lost (the
// server restarted, or its backend was terminated, after the commit).
type createAckLost struct{ storage.Catalog }

func (c createAckLost) CreateTenant(ctx context.Context, t tenantctx.Tenant) (tenantctx.Tenant, error) {
	if _, err := c.Catalog.CreateTenant(ctx, t); err != nil {
		return tenantctx.Tenant{}, err
	}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	return tenantctx.Tenant{}, fmt.Errorf("create tenant %s (slug %s): %w", t.ID, t.Slug, reset)
}

// TestProvisionWithLostCommitAckKeepsNothing: when the catalog row's
// INSERT committed but its answer was lost (the outcome is unknown to the
// caller), Provision fails, and, all or nothing for the caller, must not
// leave the tenant behind in provisioning, without a key or a migration,
// holding the slug: the caller's retry would be refused as a taken slug.
func TestProvisionWithLostCommitAckKeepsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	svc := tenancy.New(tenancy.Config{Catalog: createAckLost{b.catalog}, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	if _, err := svc.Provision(b.ctx, tenancy.NewTenant{Slug: "lostack"}, tenancy.ActorAdmin); err == nil {
		t.Fatal("Provision with the catalog INSERT's answer lost succeeded")
	}
	if tn, err := b.catalog.TenantBySlug(b.ctx, "lostack"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("after the failed Provision the catalog holds %s in status %s (err %v); want nothing kept", tn.ID, tn.Status, err)
	}
	// The caller's retry, with the catalog answering again.
	if _, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "lostack"}, tenancy.ActorAdmin); err != nil {
		t.Errorf("retried Provision: %v", err)
	}
}
