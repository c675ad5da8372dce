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
