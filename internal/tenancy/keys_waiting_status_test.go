package tenancy_test

import (
	"errors"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestIssueKeyWhileWorkWaits: the status policy makes a suspended or
// provisioning tenant's work wait, and a new key is not refused then
// (docs/architecture.md, "The status policy"): an operator replaces a
// leaked key of a suspended tenant before resuming it, and the key is
// the tenant's (it authenticates; the tenant's status still answers
// 403 or 409 until it is active). Only a tenant being deleted gets none.
func TestIssueKeyWhileWorkWaits(t *testing.T) {
	t.Parallel()
	b := setup(t)

	susp := b.active(t, "suspendedkeys")
	if _, err := b.svc.Suspend(b.ctx, susp.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "provisioningkeys"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range []struct {
		id   string
		want tenantctx.Status
	}{{susp.ID, tenantctx.StatusSuspended}, {p.Tenant.ID, tenantctx.StatusProvisioning}} {
		key, _, err := b.svc.IssueKey(b.ctx, tn.id, tenancy.ActorAdmin)
		if err != nil {
			t.Fatalf("IssueKey for a %s tenant: %v, want a key", tn.want, err)
		}
		got, err := b.catalog.TenantForAPIKey(b.ctx, key)
		if err != nil || got != tn.id {
			t.Fatalf("the new key of a %s tenant resolves to %q, %v; want %s", tn.want, got, err, tn.id)
		}
		if now, err := b.catalog.TenantByID(b.ctx, tn.id); err != nil || now.Status != tn.want {
			t.Fatalf("after IssueKey: %+v, %v; want it still %s", now, err, tn.want)
		}
	}

	del := b.active(t, "deletingkeys")
	if _, err := b.svc.RequestDeletion(b.ctx, del.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.svc.IssueKey(b.ctx, del.ID, tenancy.ActorAdmin); !errors.Is(err, tenancy.ErrRefused) {
		t.Fatalf("IssueKey for a tenant being deleted = %v, want ErrRefused", err)
	}
}
