package fair_test

import (
	"context"
	"testing"

	"github.com/invoicing/tenantworker/fair"
)

// TestSetPolicyAppliesToBacklog: a changed policy reaches a tenant's
// backlog at once, not only with its next enqueue: a raised running cap
// admits more of the backlog, a lowered one admits nothing past it, and a
// tenant without state in the queue gets none.
func TestSetPolicyAppliesToBacklog(t *testing.T) {
	t.Parallel()
	b := setup(t, 50)
	ctx := context.Background()
	enqueue(t, b, "tn_limited", fair.Policy{Weight: 1, MaxRunning: 2, MaxWaiting: 100}, 0, 20)
	if s := stats(t, b, "tn_limited"); s.Admitted != 2 {
		t.Fatalf("admitted %d, want the cap of 2", s.Admitted)
	}
	raised := fair.Policy{Weight: 3, MaxRunning: 5, MaxWaiting: 50}
	if err := b.d.SetPolicy(ctx, "tn_limited", raised, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, "tn_limited"); s.Admitted != 5 || s.Waiting != 15 || s.Policy != raised {
		t.Fatalf("after raising the cap: admitted %d waiting %d policy %+v, want 5, 15, %+v", s.Admitted, s.Waiting, s.Policy, raised)
	}
	// Lowered below what runs: nothing more is admitted until it is under.
	if err := b.d.SetPolicy(ctx, "tn_limited", fair.Policy{Weight: 1, MaxRunning: 1}, q); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		id := dequeue(t, b)
		if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: "tn_limited", Type: "invoice:pdf", Cost: 1000}}); err != nil {
			t.Fatal(err)
		}
		done(t, b, id)
	}
	if s := stats(t, b, "tn_limited"); s.Admitted != 2 || s.Waiting != 15 {
		t.Fatalf("after lowering the cap to 1 and 3 of 5 finished: admitted %d waiting %d, want 2 and 15", s.Admitted, s.Waiting)
	}
	if err := b.d.SetPolicy(ctx, "tn_stranger", raised, q); err != nil {
		t.Fatal(err)
	}
	if n, err := b.rdb.Exists(ctx, "fair:{"+q+"}:t:tn_stranger").Result(); err != nil || n != 0 {
		t.Fatalf("a tenant without state got some: %d, %v", n, err)
	}
}

// tenantVT is the tenant's virtual time: its score in the ready set, or
// the one kept in its state while it is not ready.
func tenantVT(t *testing.T, b bundle, tenant string) float64 {
	t.Helper()
	ctx := context.Background()
	if s, err := b.rdb.ZScore(ctx, "fair:{"+q+"}:ready", tenant).Result(); err == nil {
		return s
	}
	v, err := b.rdb.HGet(ctx, "fair:{"+q+"}:t:"+tenant, "vt").Float64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestWeightChangeKeepsChargesConsistent: a task is charged its estimate
// over the weight its tenant had when it was admitted; a weight changed
// while it is admitted must not change what its refund (a hold moves it
// back) or its correction (its report) takes off again, or the tenant
// gains or loses virtual time it never used.
func TestWeightChangeKeepsChargesConsistent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// DefaultCost (5 ms) is the estimate: admitted at weight 4, a task is
	// charged 1250 us of virtual time.
	t.Run("refund", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 50)
		enqueue(t, b, "tn_w", fair.Policy{Weight: 4}, 0, 1)
		if v := tenantVT(t, b, "tn_w"); v != 1250 {
			t.Fatalf("virtual time after admission %v, want 1250", v)
		}
		if err := b.d.SetPolicy(ctx, "tn_w", fair.Policy{Weight: 1}, q); err != nil {
			t.Fatal(err)
		}
		if moved, err := b.d.Hold(ctx, "tn_w", fair.Paused, q); err != nil || moved != 1 {
			t.Fatalf("hold moved %d, %v; want 1", moved, err)
		}
		if v := tenantVT(t, b, "tn_w"); v != 0 {
			t.Fatalf("virtual time after the refund %v, want 0 (what it was before the admission)", v)
		}
	})
	t.Run("report", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 50)
		enqueue(t, b, "tn_w", fair.Policy{Weight: 4}, 0, 1)
		if err := b.d.SetPolicy(ctx, "tn_w", fair.Policy{Weight: 1}, q); err != nil {
			t.Fatal(err)
		}
		id := dequeue(t, b)
		if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: "tn_w", Type: "invoice:pdf", Cost: 1000 * 1000}}); err != nil {
			t.Fatal(err)
		}
		// 1 ms of worker time at the weight it was admitted with.
		if v := tenantVT(t, b, "tn_w"); v != 250 {
			t.Fatalf("virtual time after the report %v, want 250 (1000 us over weight 4)", v)
		}
	})
}
