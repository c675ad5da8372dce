package tenancy_test

import (
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestResetPoliciesAfterACatalogRestore: the catalog is restored from a
// backup taken before a limits change, so the tenant's row holds the old
// limits and an updated_at older than the version of the policy its queues
// recorded. Its enqueues then carry the older version and leave the later
// policy in force; ResetPolicies gives the queues the restored row's
// policy, and the tenant's enqueues keep it from then on.
func TestResetPoliciesAfterACatalogRestore(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "restored")
	backup, err := b.svc.SetLimits(b.ctx, tn.ID, "", tenantctx.Limits{MaxRunning: 2, MaxWaiting: 50}, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.SetLimits(b.ctx, tn.ID, "", tenantctx.Limits{Weight: 3, MaxRunning: 7}, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	b.pdfs(t, tn, 3)
	// The restore: the row as the backup has it.
	if _, err := b.pool.Exec(b.ctx, `UPDATE tenancy.tenants SET weight = $2, max_running = $3, max_waiting = $4, updated_at = $5 WHERE id = $1`,
		tn.ID, backup.Limits.Weight, backup.Limits.MaxRunning, backup.Limits.MaxWaiting, backup.UpdatedAt); err != nil {
		t.Fatal(err)
	}
	if _, err := b.enq.Enqueue(b.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 10}); err != nil {
		t.Fatal(err)
	}
	later := fair.Policy{Weight: 3, MaxRunning: 7, MaxWaiting: 10_000}
	if d := inDefault(t, b.queue(t, tn.ID)); d.Policy != later {
		t.Fatalf("default queue after the restore: policy %+v, want the one recorded before it, %+v (the version check)", d.Policy, later)
	}

	n, err := b.svc.ResetPolicies(b.ctx)
	if err != nil || n != 1 {
		t.Fatalf("ResetPolicies = %d, %v; want 1 tenant reset", n, err)
	}
	restored := fair.Policy{Weight: 1, MaxRunning: 2, MaxWaiting: 50}
	if d := inDefault(t, b.queue(t, tn.ID)); d.Policy != restored {
		t.Fatalf("default queue after ResetPolicies: policy %+v, want the restored row's %+v", d.Policy, restored)
	}
	if _, err := b.enq.Enqueue(b.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 11}); err != nil {
		t.Fatal(err)
	}
	if d := inDefault(t, b.queue(t, tn.ID)); d.Policy != restored {
		t.Fatalf("default queue after the next enqueue: policy %+v, want %+v", d.Policy, restored)
	}
}
