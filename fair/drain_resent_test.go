package fair_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestDrainFirstStepSentAgain: go-redis sent a drain's first step again
// (its reply was lost to a read timeout after it ran), and the tenant
// enqueued in between. The drain answers what it discarded, the first
// run's work included, and the tasks enqueued (and accepted) in between
// stay. The second run used to set the backlog aside again: it took the
// new tasks in place of the first run's leftovers (RENAME over its list),
// discarded them, and answered only its own counts.
func TestDrainFirstStepSentAgain(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_dr_resent"
	enqueueBacklog(t, b, tn, 5002)
	before := stats(t, b, tn) // 1 admitted, 5001 waiting
	d2 := otherProcess(t, b)
	rdb := redis.NewClient(&redis.Options{Addr: b.rdb.Options().Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	// The drain's first step sent twice (testenv.SendTwice), the tenant
	// enqueueing in between: drainScript's ARGV ends with tenant, step
	// (5000), first, token, and how long its marks of discarded tasks last.
	hook := &testenv.SendTwice{Once: true,
		Match: func(args []any) bool {
			n := len(args)
			return n > 5 && args[n-5] == tn && args[n-3] == "1"
		},
		Between: func() { enqueueThrough(t, d2, tn, 10_000, 100) },
	}
	rdb.AddHook(hook)
	d := fair.New(rdb, fair.Config{MinPending: 1, PendingPerSlot: 1, PendingTime: 1, Now: b.clock.Now})
	n, err := d.Drain(ctx, tn, q)
	if err != nil {
		t.Fatal(err)
	}
	if !hook.Fired() {
		t.Fatal("the hook never ran")
	}
	after := stats(t, b, tn)
	t.Logf("before: waiting %d admitted %d; drained %+v; after: waiting %d admitted %d", before.Waiting, before.Admitted, n, after.Waiting, after.Admitted)
	if n.Waiting != before.Waiting || n.Admitted != before.Admitted {
		t.Errorf("Drain answered %d waiting and %d admitted discarded, want the %d and %d there when it began", n.Waiting, n.Admitted, before.Waiting, before.Admitted)
	}
	lost := 0
	for i := 10_000; i < 10_100; i++ {
		id := task(tn, i).Message.ID
		if _, ok, _ := b.d.Waiting(ctx, id, q); !ok && inAsynq(t, b, id) != "pending" {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of the 100 tasks enqueued (and accepted) during the drain were discarded", lost)
	}
	for i := 1; i < 5002; i++ {
		id := task(tn, i).Message.ID
		if _, ok, _ := b.d.Waiting(ctx, id, q); ok {
			t.Errorf("task %s that waited when the drain began still waits (its record outside any list)", id)
			break
		}
	}
}
