package fair_test

import (
	"context"
	"testing"

	"github.com/invoicing/tenantworker/fair"
)

// TestPolicySetAsideOutlivesStateWithoutPolicy: a limits change that finds
// no state of the tenant in the queue sets its policy aside for the
// enqueue already on its way with the tenant as it was before; that
// enqueue must take it also when the tenant has some state there that
// records no policy (a drain's scan mark, lists left by a switch from
// plain dispatch), which counts the tenant as known.
func TestPolicySetAsideOutlivesStateWithoutPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t, 50)
	ctx := context.Background()
	newer := fair.Policy{Weight: 3, MaxRunning: 2, MaxWaiting: 7, Version: 20}
	if err := b.d.SetPolicy(ctx, "tn_aside", newer, q); err != nil {
		t.Fatal(err)
	}
	// State that records no policy: a field of the tenant's hash other
	// than the policy's (a drain's scan mark is one).
	if err := b.rdb.HSet(ctx, "fair:{"+q+"}:t:tn_aside", "scan", "1").Err(); err != nil {
		t.Fatal(err)
	}
	stale := fair.Policy{Weight: 1, MaxRunning: 10, MaxWaiting: 10000, Version: 10}
	enqueue(t, b, "tn_aside", stale, 0, 1)
	newer.Version = 0 // Stats does not report it
	if s := stats(t, b, "tn_aside"); s.Policy != newer {
		t.Fatalf("policy after a stale enqueue = %+v, want the one set aside, %+v", s.Policy, newer)
	}
}

// TestResetPolicyDropsThePolicySetAside: a reset (the catalog restored
// from a backup, its versions back in time) leaves no policy set aside
// from before it, also for a tenant with state in the queue: the
// tenant's next first enqueue there, once its state is gone, would take
// that later-versioned, older policy.
func TestResetPolicyDropsThePolicySetAside(t *testing.T) {
	t.Parallel()
	b := setup(t, 50)
	ctx := context.Background()
	before := fair.Policy{Weight: 3, MaxRunning: 2, MaxWaiting: 7, Version: 20}
	if err := b.d.SetPolicy(ctx, "tn_reset", before, q); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, "tn_reset", before, 0, 1)
	restored := fair.Policy{Weight: 1, MaxRunning: 5, MaxWaiting: 50, Version: 5}
	if err := b.d.ResetPolicy(ctx, "tn_reset", restored, q); err != nil {
		t.Fatal(err)
	}
	if n, err := b.rdb.Exists(ctx, "fair:{"+q+"}:pp:tn_reset").Result(); err != nil || n != 0 {
		t.Fatalf("a policy set aside before the reset is still there (%d, %v): the tenant's next first enqueue here would take it", n, err)
	}
}
