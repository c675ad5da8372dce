package fair_test

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// runAll runs what the tenant's backlog admits, one task at a time (the
// dispatcher keeps one pending), and returns the ids in the order they ran.
func runAll(t *testing.T, b bundle, tn string) []string {
	t.Helper()
	ctx := context.Background()
	var order []string
	for {
		id := dequeue(t, b)
		if id == "" {
			return order
		}
		order = append(order, id)
		if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
			t.Fatal(err)
		}
		done(t, b, id)
	}
}

// sameOrder fails unless got lists the tasks n of tn in want's order.
func sameOrder(t *testing.T, tn string, got []string, want ...int) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = got[i] == task(tn, want[i]).Message.ID
	}
	if !ok {
		t.Fatalf("ran %v; want tasks %v of %s in that order (enqueue order)", got, want, tn)
	}
}

// TestRestoresKeepEnqueueOrder: tasks that go back into a backlog (a
// parked task released, what a drain cut off between its steps set aside
// and the heartbeat puts back) go back in enqueue-time order, whichever
// comes back first: each used to go to the front of the backlog, so that
// the last one back ran first, a kept task ahead of older tasks the drain
// had set aside, or those ahead of an older kept task.
func TestRestoresKeepEnqueueOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A drain's first step discards 5,000 tasks: what it set aside beyond
	// them waits for the heartbeat once the drain is cut off.
	const n = 5000 + 2
	t.Run("kept task released before the set-aside", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 1)
		const tn = "tn_order_kept_first"
		enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
		running := dequeue(t, b) // task 0, the oldest
		b.clock.Advance(time.Second)
		for from := 1; from <= n+1; from += 1000 {
			enqueue(t, b, tn, fair.Policy{Weight: 1}, from, min(1000, n+2-from))
		}
		cutDrain(t, b, tn) // discards the admitted task 1 and 2..5001; sets aside 5002, 5003
		holdAndPark(t, b, tn, running, fair.Paused)
		done(t, b, running) // asynq.RevokeTask
		afterHandBack(b)
		if _, err := b.d.Release(ctx, tn, fair.Paused, q); err != nil {
			t.Fatal(err)
		}
		b.clock.Advance(time.Minute) // the drain's mark runs out
		if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
			t.Fatal(err)
		}
		sameOrder(t, tn, runAll(t, b, tn), 0, 5002, 5003)
	})
	t.Run("set-aside put back before a kept task between older and newer ones", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 1)
		const tn = "tn_order_setaside_first"
		for from := 0; from < n; from += 1000 {
			enqueue(t, b, tn, fair.Policy{Weight: 1}, from, min(1000, n-from))
		}
		cutDrain(t, b, tn)                         // discards the admitted task 0 and 1..5000; sets aside 5001
		b.clock.Advance(time.Minute + time.Second) // the drain's mark runs out
		// Enqueued before a heartbeat put the rest back: admitted at once.
		enqueue(t, b, tn, fair.Policy{Weight: 1}, 6000, 1)
		newer := dequeue(t, b)
		if newer != task(tn, 6000).Message.ID {
			t.Fatalf("dequeued %q, want task 6000, admitted once the drain's mark ran out", newer)
		}
		holdAndPark(t, b, tn, newer, fair.Paused)
		done(t, b, newer) // asynq.RevokeTask
		b.clock.Advance(time.Second)
		enqueue(t, b, tn, fair.Policy{Weight: 1}, 7000, 1) // newer still: waits, the tenant is paused
		// The heartbeat puts task 5001 back.
		if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
			t.Fatal(err)
		}
		afterHandBack(b)
		if _, err := b.d.Release(ctx, tn, fair.Paused, q); err != nil {
			t.Fatal(err)
		}
		sameOrder(t, tn, runAll(t, b, tn), 5001, 6000, 7000)
	})
}

// TestParkedRetryGoesBackInFrontOfTheWaitingTasks: a retry parked at its
// tenant's running cap has no enqueue time of its own (asynq's message
// carries none); it was admitted before every task still waiting, so it is
// recorded as no later than the oldest of them and goes back in front of
// them, as before restores were ordered by enqueue time.
func TestParkedRetryGoesBackInFrontOfTheWaitingTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_retry_front"
	p := fair.Policy{Weight: 1, MaxRunning: 1}
	enqueued := b.clock.Now()
	enqueue(t, b, tn, p, 0, 3)
	running := dequeue(t, b)
	b.clock.Advance(10 * time.Second)
	r := task(tn, 100)
	retry := r.Message.ID
	b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+retry, "msg", r.Message.Encode(), "state", "active")
	b.rdb.LPush(ctx, "asynq:{"+q+"}:active", retry)
	if parked, err := b.d.Gate(ctx, q, retry, tn, "invoice:pdf"); err != nil || !parked {
		t.Fatalf("Gate of a retry at the cap = %v, %v; want parked", parked, err)
	}
	done(t, b, retry) // asynq.RevokeTask
	afterHandBack(b)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	w, ok, err := b.d.Waiting(ctx, retry, q)
	if err != nil || !ok || !w.Enqueued.Equal(enqueued) {
		t.Fatalf("Waiting(%s) = %+v, %v, %v; want it back, enqueued as the oldest waiting task (%v)", retry, w, ok, err, enqueued)
	}
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: running, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, running)
	if got := dequeue(t, b); got != retry {
		t.Fatalf("dequeued %q once the slot was free, want the parked retry %s first", got, retry)
	}
}
