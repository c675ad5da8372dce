package enqueueapp_test

import (
	"context"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestTenantResetPoliciesAfterACatalogRestore: with the catalog restored
// from a backup taken before a limits change (the row's old limits and
// updated_at), the tenant's queue keeps the later policy; after the tenant
// cache's keys are deleted, enqueue tenant reset-policies gives the queue
// the restored row's policy and says how many tenants it reset.
func TestTenantResetPoliciesAfterACatalogRestore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	tn := f.provision(t, "restored") // its tenant:migrate waits in the critical queue
	backup, err := f.deps.Tenancy.SetLimits(ctx, tn.ID, "", tenantctx.Limits{MaxRunning: 2}, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.deps.Tenancy.SetLimits(ctx, tn.ID, "", tenantctx.Limits{MaxRunning: 7}, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := f.deps.Pool.Exec(ctx, `UPDATE tenancy.tenants SET max_running = $2, updated_at = $3 WHERE id = $1`,
		tn.ID, backup.Limits.MaxRunning, backup.UpdatedAt); err != nil {
		t.Fatal(err)
	}
	keys, err := f.deps.Redis.Keys(ctx, "tenantcache:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		if err := f.deps.Redis.Unlink(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	}

	if p := critical(t, f, tn.ID); p.MaxRunning != 7 {
		t.Fatalf("critical queue after the restore: policy %+v, want the one recorded before it (max running 7)", p)
	}

	code, stdout, stderr := f.run(t, false, "tenant", "reset-policies")
	if code != enqueueapp.ExitOK || !strings.Contains(stdout, "reset the policies of 1 tenants") {
		t.Fatalf("tenant reset-policies: exit %d stdout %q stderr %q; want exit 0 saying it reset 1 tenant", code, stdout, stderr)
	}
	want := fair.Policy{Weight: 1, MaxRunning: 2, MaxWaiting: 10_000}
	if p := critical(t, f, tn.ID); p != want {
		t.Errorf("critical queue after tenant reset-policies: policy %+v, want the restored row's %+v", p, want)
	}
	if code, _, stderr := f.run(t, false, "tenant", "reset-policies", "extra"); code != enqueueapp.ExitUsage {
		t.Errorf("tenant reset-policies extra: exit %d stderr %q, want %d", code, stderr, enqueueapp.ExitUsage)
	}
}

// critical returns the policy the tenant's critical queue records.
func critical(t *testing.T, f *fixture, id string) fair.Policy {
	t.Helper()
	q, err := f.deps.Tenancy.Queue(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range q.Queues {
		if s.Queue == tasks.QueueCritical {
			return s.Policy
		}
	}
	t.Fatalf("no critical queue in %+v", q)
	return fair.Policy{}
}
