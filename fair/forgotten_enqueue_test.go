package fair_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// tenantTraces lists what Redis keeps of tenant in queue q's fair keys:
// the keys naming it that do not expire, and its members of the queue's tenant sets and
// hashes. An erased tenant, once forgotten, has none.
func tenantTraces(t *testing.T, rdb *redis.Client, q, tenant string) []string {
	t.Helper()
	ctx := context.Background()
	all, err := rdb.Keys(ctx, "fair:*"+tenant+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, k := range all {
		// A key that expires (a drain's record of its first step, an
		// hour) does not stay.
		if ttl, err := rdb.PTTL(ctx, k).Result(); err != nil || ttl < 0 {
			keys = append(keys, k)
		}
	}
	p := "fair:{" + q + "}:"
	for _, z := range []string{"ready", "depth", "lost", "dr:" + tenant} {
		if _, err := rdb.ZScore(ctx, p+z, tenant).Result(); err == nil {
			keys = append(keys, p+z+" member")
		}
	}
	for _, s := range []string{"draining", "keptt", "parkedt"} {
		if ok, _ := rdb.SIsMember(ctx, p+s, tenant).Result(); ok {
			keys = append(keys, p+s+" member")
		}
	}
	if ok, _ := rdb.HExists(ctx, p+"hold", tenant).Result(); ok {
		keys = append(keys, p+"hold field")
	}
	return keys
}

// TestEnqueueThatAddsNothingLeavesNoTenantState: an enqueue that adds no
// task (every task found, or refused by the tenant's or the queue's
// waiting cap) writes no state of a tenant the queue has none of: after
// an erasure's Forget, a late enqueue of that kind would otherwise leave
// the erased tenant's policy in Redis for good, with no task a worker
// could meet to forget it again. A tenant with state still gets the
// policy of a refused enqueue, as before.
func TestEnqueueThatAddsNothingLeavesNoTenantState(t *testing.T) {
	t.Parallel()
	b := setupConfig(t, fair.Config{MinPending: 1, PendingPerSlot: 1, PendingTime: time.Microsecond, MaxWaitingTotal: 2})
	ctx := context.Background()
	const gone = "tn_forgotten"
	p := fair.Policy{Weight: 1, MaxWaiting: 2}
	enqueue(t, b, gone, p, 0, 1) // admitted: asynq holds it as pending
	if err := b.d.Forget(ctx, gone, q); err != nil {
		t.Fatal(err)
	}
	if tr := tenantTraces(t, b.rdb, q, gone); len(tr) > 0 {
		t.Fatalf("after Forget: %v", tr)
	}

	// The same task again: asynq still has it.
	res := enqueue(t, b, gone, p, 0, 1)
	if !res[0].Existing {
		t.Fatalf("late enqueue of a task asynq holds = %+v, want existing", res[0])
	}
	if tr := tenantTraces(t, b.rdb, q, gone); len(tr) > 0 {
		t.Errorf("a late enqueue that found its task left the forgotten tenant's state: %v", tr)
	}

	// Past the tenant's waiting cap.
	_, err := b.d.Enqueue(ctx, gone, p, []fair.Task{task(gone, 1), task(gone, 2), task(gone, 3)})
	if !errors.Is(err, fair.ErrBacklogFull) {
		t.Fatalf("enqueue past max waiting = %v, want ErrBacklogFull", err)
	}
	if tr := tenantTraces(t, b.rdb, q, gone); len(tr) > 0 {
		t.Errorf("a late enqueue refused by the tenant's cap left the forgotten tenant's state: %v", tr)
	}

	// Past the queue's waiting cap (2), filled by another tenant (asynq's
	// pending list holds the forgotten tenant's task: nothing is admitted).
	live := fair.Policy{Weight: 1, MaxWaiting: 10}
	enqueue(t, b, "tn_filler", live, 0, 2)
	if _, err := b.d.Enqueue(ctx, gone, p, []fair.Task{task(gone, 4)}); !errors.Is(err, fair.ErrQueueFull) {
		t.Fatalf("enqueue past the queue's cap = %v, want ErrQueueFull", err)
	}
	if tr := tenantTraces(t, b.rdb, q, gone); len(tr) > 0 {
		t.Errorf("a late enqueue refused by the queue's cap left the forgotten tenant's state: %v", tr)
	}

	// A tenant with state gets a refused enqueue's policy, as before.
	changed := fair.Policy{Weight: 3, MaxWaiting: 10}
	if _, err := b.d.Enqueue(ctx, "tn_filler", changed, []fair.Task{task("tn_filler", 9)}); !errors.Is(err, fair.ErrQueueFull) {
		t.Fatalf("enqueue past the queue's cap = %v, want ErrQueueFull", err)
	}
	if s := stats(t, b, "tn_filler"); s.Policy.Weight != 3 {
		t.Errorf("policy of a tenant with state after a refused enqueue: %+v, want weight 3", s.Policy)
	}

	// An enqueue that adds a task brings the policy: the worker meeting
	// that task forgets it again (worker.ResolveTenant).
	if err := b.d.Forget(ctx, "tn_filler", q); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, gone, p, 10, 1)
	if s := stats(t, b, gone); s.Policy.Weight != 1 || s.Policy.MaxWaiting != 2 {
		t.Errorf("policy after an enqueue that added a task: %+v, want %+v", s.Policy, p)
	}
}
