package tenancy_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
)

// TestActivationIsAuditedWhenTheWorkerGoesAway: a tenant:migrate's
// context ends (worker shutdown, the task's deadline) just as the
// activation of its tenant is saved. The activation happened, so it must
// be recorded (the package's rule: once a change is saved, its audit entry
// is written detached from the caller); a retry finds the tenant active
// and records nothing.
func TestActivationIsAuditedWhenTheWorkerGoesAway(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "shutdown"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	svc := tenancy.New(tenancy.Config{Catalog: goneAfterWrite{Catalog: b.catalog, cancel: cancel},
		Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	_, err = svc.Migrate(ctx, p.Tenant, 0, tenancy.ActorWorker)
	t.Logf("first run, its context ended after the activation was saved: %v", err)
	// The task is retried (or not: it failed); either way, a later run.
	tn, gerr := b.catalog.TenantByID(b.ctx, p.Tenant.ID)
	if gerr != nil {
		t.Fatal(gerr)
	}
	if _, err := b.svc.Migrate(b.ctx, tn, 0, tenancy.ActorWorker); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if _, err := b.svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker); err != nil {
		t.Fatalf("retry with the tenant as first resolved: %v", err)
	}
	n := 0
	for _, e := range b.audit(t, p.Tenant.ID) {
		var d map[string]string
		if e.Action == string(tenancy.ActionStatusChanged) && json.Unmarshal(e.Detail, &d) == nil && d["to"] == "active" {
			n++
		}
	}
	if tn.Status != "active" || n != 1 {
		t.Fatalf("tenant %s; %d tenant.status_changed entries for its activation, want 1", tn.Status, n)
	}
}
