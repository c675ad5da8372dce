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
	return tenantctx.Tenant{}, fmt.Errorf("create tenant %s (slug %s): %w", t.ID, t.Slug, errConnReset)
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

// createArrivesLate reports the connection reset without creating the
// tenant, and keeps it in late: its INSERT is still on its way to
// PostgreSQL, which will run it after the caller gave up (the caller's
// deadline cut it in flight, or the server's backend was slow to read it).
type createArrivesLate struct {
	storage.Catalog
	late chan tenantctx.Tenant
}

func (c createArrivesLate) CreateTenant(ctx context.Context, t tenantctx.Tenant) (tenantctx.Tenant, error) {
	c.late <- t
	return tenantctx.Tenant{}, fmt.Errorf("create tenant %s (slug %s): %w", t.ID, t.Slug, errConnReset)
}

// TestProvisionWithInsertArrivingLateKeepsNothing: when the catalog row's
// INSERT reaches PostgreSQL only after Provision's clean-up (its outcome
// was unknown, the clean-up found nothing to delete), the INSERT must not
// create the tenant: it would hold the slug in provisioning, without a key
// or a migration, and the caller's retry would be refused as a taken slug.
func TestProvisionWithInsertArrivingLateKeepsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	late := make(chan tenantctx.Tenant, 1)
	svc := tenancy.New(tenancy.Config{Catalog: createArrivesLate{b.catalog, late}, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	if _, err := svc.Provision(b.ctx, tenancy.NewTenant{Slug: "latecomer"}, tenancy.ActorAdmin); err == nil {
		t.Fatal("Provision with the catalog INSERT's answer lost succeeded")
	}
	if tn, err := b.catalog.CreateTenant(b.ctx, <-late); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("the INSERT arriving after the clean-up created %s (err %v); want it refused (ErrConflict)", tn.ID, err)
	}
	if tn, err := b.catalog.TenantBySlug(b.ctx, "latecomer"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("after the failed Provision the catalog holds %s in status %s (err %v); want nothing kept", tn.ID, tn.Status, err)
	}
	if _, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "latecomer"}, tenancy.ActorAdmin); err != nil {
		t.Errorf("retried Provision: %v", err)
	}
}

// errConnReset is what a client of PostgreSQL sees when the connection is
// reset before a statement's answer came (the server restarted, or its
// backend was terminated): the statement's outcome is unknown.
var errConnReset error = &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
