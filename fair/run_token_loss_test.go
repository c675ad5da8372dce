package fair_test

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestReportFromBeforeRedisLostItsDataEndsNoNewRun: Redis restarted empty
// (or was flushed) while a worker ran a task. The task's id is enqueued
// again in the same order as before (a re-run of migrate --all, a client
// retrying), and admitted under a run token of its own; the late report
// of the attempt from before the loss names the old run's token, and must
// not end the new run: the tenant's cap of one would then let its next
// task run beside it.
func TestReportFromBeforeRedisLostItsDataEndsNoNewRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 5)
	ctx := context.Background()
	p := fair.Policy{Weight: 1, MaxRunning: 1}
	enqueue(t, b, "tn_loss", p, 0, 1)
	old := dequeue(t, b)
	msg, err := b.rdb.HGet(ctx, "asynq:{"+q+"}:t:"+old, "msg").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	oldRun := runOf(msg)
	if err := b.rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Second)
	// The same task again, and one more: the cap admits the first only.
	enqueue(t, b, "tn_loss", p, 0, 2)
	again := dequeue(t, b)
	if again != old {
		t.Fatalf("dequeued %q, want %q again", again, old)
	}
	msg, _ = b.rdb.HGet(ctx, "asynq:{"+q+"}:t:"+again, "msg").Bytes()
	newRun := runOf(msg)
	// The attempt from before the loss ends and reports its run.
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: old, TenantID: "tn_loss", Type: "invoice:pdf", Cost: time.Millisecond, Run: oldRun}}); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, "tn_loss"); s.Admitted != 1 || pendingLen(t, b) != 0 {
		t.Fatalf("after the report of run %s (before the loss) the new run %s of %s is over: admitted %d, pending %d; want the new run admitted and task 1 waiting under the cap of 1",
			oldRun, newRun, old, s.Admitted, pendingLen(t, b))
	}
}

// TestParkFromBeforeRedisLostItsDataParksNoNewRun: as above, but the
// tenant is paused after the loss and the attempt from before it parks
// under its old run: the new run, running on another worker, must not be
// parked (released later, it would run a second time).
func TestParkFromBeforeRedisLostItsDataParksNoNewRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 5)
	ctx := context.Background()
	p := fair.Policy{Weight: 1}
	enqueue(t, b, "tn_lossp", p, 0, 1)
	old := dequeue(t, b)
	msg, _ := b.rdb.HGet(ctx, "asynq:{"+q+"}:t:"+old, "msg").Bytes()
	oldRun := runOf(msg)
	if err := b.rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Second)
	enqueue(t, b, "tn_lossp", p, 0, 1)
	if again := dequeue(t, b); again != old {
		t.Fatalf("dequeued %q, want %q again", again, old)
	}
	if _, err := b.d.Hold(ctx, "tn_lossp", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	parked, err := b.d.ParkRun(ctx, q, old, "tn_lossp", "invoice:pdf", oldRun)
	if err != nil {
		t.Fatal(err)
	}
	if parked {
		t.Fatalf("the park of run %s from before the loss parked the new run of %s, which is running", oldRun, old)
	}
}
