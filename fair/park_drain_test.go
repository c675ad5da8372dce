package fair_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// afterDrainStep runs fn once, right after the first drain script call of
// tenant returned (between Drain's steps).
type afterDrainStep struct {
	tenant string
	fired  *atomic.Bool
	fn     func()
}

func (h afterDrainStep) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h afterDrainStep) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h afterDrainStep) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		args := cmd.Args()
		// drainScript's ARGV ends with tenant, step (5000), first, token,
		// and how long its marks of discarded tasks last.
		if n := len(args); err == nil && n > 5 && (cmd.Name() == "evalsha" || cmd.Name() == "eval") &&
			args[n-5] == h.tenant && args[n-3] == "1" && h.fired.CompareAndSwap(false, true) {
			h.fn()
		}
		return err
	}
}

// otherProcess returns a dispatcher on a Redis client of its own, as
// another process (an enqueue service, an operator) runs one: the hooks of
// b's client do not see its commands.
func otherProcess(t *testing.T, b bundle) *fair.Dispatcher {
	t.Helper()
	other := redis.NewClient(&redis.Options{Addr: b.rdb.Options().Addr})
	t.Cleanup(func() { _ = other.Close() })
	return fair.New(other, fair.Config{MinPending: 1, PendingPerSlot: 1, PendingTime: time.Microsecond, Now: b.clock.Now})
}

// enqueueThrough enqueues tasks from to from+n-1 of tenant through d,
// reporting a failure without stopping (it runs inside a drain's step).
func enqueueThrough(t *testing.T, d *fair.Dispatcher, tenant string, from, n int) {
	t.Helper()
	var tasks []fair.Task
	for i := from; i < from+n; i++ {
		tasks = append(tasks, task(tenant, i))
	}
	if _, err := d.Enqueue(context.Background(), tenant, fair.Policy{Weight: 1}, tasks); err != nil {
		t.Errorf("enqueue during the drain: %v", err)
	}
}

// drainAround drains tenant through b's dispatcher with fn run once after
// the drain's first step, and fails the test unless fn ran.
func drainAround(t *testing.T, b bundle, tenant string, fn func()) fair.Drained {
	t.Helper()
	var fired atomic.Bool
	b.rdb.AddHook(afterDrainStep{tenant: tenant, fired: &fired, fn: fn})
	n, err := b.d.Drain(context.Background(), tenant, q)
	if err != nil {
		t.Fatal(err)
	}
	if !fired.Load() {
		t.Fatal("the hook never ran")
	}
	return n
}

// TestDrainKeepsTasksEnqueuedWhileDraining: a drain in steps discards at
// most what waited at its first step: tasks the tenant enqueued (and got
// accepted) between its steps stay.
func TestDrainKeepsTasksEnqueuedWhileDraining(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	const tn = "tn_drainrace"
	enqueueBacklog(t, b, tn, 5002)
	before := stats(t, b, tn) // 1 admitted, 5001 waiting
	// A second client (another enqueue service) enqueues between steps.
	d2 := otherProcess(t, b)
	n := drainAround(t, b, tn, func() { enqueueThrough(t, d2, tn, 10_000, 100) })
	after := stats(t, b, tn)
	t.Logf("before: waiting %d admitted %d; drained %+v; after: waiting %d admitted %d", before.Waiting, before.Admitted, n, after.Waiting, after.Admitted)
	if n.Waiting > before.Waiting {
		t.Errorf("Drain discarded %d waiting tasks, but only %d waited when it started", n.Waiting, before.Waiting)
	}
	if kept := after.Waiting + after.Admitted; kept != 100 {
		t.Errorf("the 100 tasks enqueued (and accepted) during the drain: %d kept, want 100", kept)
	}
}

// TestParkedAgainKeepsEnqueueTime: a parked task whose hour in asynq's
// retry set runs out while its tenant is still suspended is dequeued and
// parked again; it keeps its enqueue time through both parks.
func TestParkedAgainKeepsEnqueueTime(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	enqueued := b.clock.Now()
	enqueue(t, b, "tn_rp2", fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b)
	enqueue(t, b, "tn_other", fair.Policy{Weight: 1}, 0, 1) // keeps asynq's list full (MinPending 1)
	b.clock.Advance(10 * time.Second)
	if _, err := b.d.Hold(ctx, "tn_rp2", fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	toRetry := func() {
		b.rdb.LRem(ctx, A+"active", 0, id)
		b.rdb.HSet(ctx, A+"t:"+id, "state", "retry")
		b.rdb.ZAdd(ctx, A+"retry", redis.Z{Score: float64(b.clock.Now().Add(time.Hour).Unix()), Member: id})
	}
	if ok, err := b.d.Park(ctx, q, id, "tn_rp2", "invoice:pdf"); err != nil || !ok {
		t.Fatalf("Park = %v, %v", ok, err)
	}
	toRetry()
	// An hour later, still suspended: asynq's forwarder makes it pending, a
	// worker dequeues it and parks it again (as with the previous release's
	// workers, which left parked tasks in the retry set for an hour).
	b.clock.Advance(time.Hour + time.Minute)
	b.rdb.ZRem(ctx, A+"retry", id)
	b.rdb.LPush(ctx, A+"active", id)
	b.rdb.HSet(ctx, A+"t:"+id, "state", "active")
	if ok, err := b.d.Park(ctx, q, id, "tn_rp2", "invoice:pdf"); err != nil || !ok {
		t.Fatalf("second Park = %v, %v", ok, err)
	}
	toRetry()
	if _, err := b.d.Release(ctx, "tn_rp2", fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	w, ok, err := b.d.Waiting(ctx, id, q)
	if err != nil || !ok {
		t.Fatalf("Waiting = %v, %v", ok, err)
	}
	if !w.Enqueued.Equal(enqueued) {
		t.Fatalf("released task's enqueue time %v, want %v (it was enqueued then; off by %v)", w.Enqueued, enqueued, w.Enqueued.Sub(enqueued))
	}
}

// TestGateKeepsRetriesUnderTheCap: a task asynq retried comes back past
// admission. Gate lets an admitted task run as it is; it counts a retry
// the tenant's running cap has room for as running until its report; one
// it has no room for (or of a held tenant) is parked, and the next
// heartbeat puts it back into the tenant's backlog, from where it is
// admitted once a slot is free.
func TestGateKeepsRetriesUnderTheCap(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	const tn = "tn_retries"
	p := fair.Policy{Weight: 1, MaxRunning: 1}
	enqueue(t, b, tn, p, 0, 1)
	running := dequeue(t, b)
	if parked, err := b.d.Gate(ctx, q, running, tn, "invoice:pdf"); err != nil || parked {
		t.Fatalf("Gate of an admitted task = %v, %v; want it to run", parked, err)
	}

	// A task of the tenant that failed earlier, back from asynq's retry
	// set (asynq's forwarder made it pending, a worker took it).
	retried := func(n int) string {
		x := task(tn, 100+n)
		b.rdb.HSet(ctx, A+"t:"+x.Message.ID, "msg", x.Message.Encode(), "state", "active")
		b.rdb.LPush(ctx, A+"active", x.Message.ID)
		return x.Message.ID
	}
	r1 := retried(1)
	if parked, err := b.d.Gate(ctx, q, r1, tn, "invoice:pdf"); err != nil || !parked {
		t.Fatalf("Gate of a retry with the cap full = %v, %v; want parked", parked, err)
	}
	// The worker hands it back to asynq's retry set (worker.ErrRetryParked).
	b.rdb.LRem(ctx, A+"active", 0, r1)
	b.rdb.HSet(ctx, A+"t:"+r1, "state", "retry")
	b.rdb.ZAdd(ctx, A+"retry", redis.Z{Score: float64(b.clock.Now().Add(time.Hour).Unix()), Member: r1})
	if err := b.d.Heartbeat(ctx, q, "w1", 4, time.Minute); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Waiting != 1 || s.Admitted != 1 {
		t.Fatalf("after the heartbeat: %+v; want the parked retry waiting in the backlog, 1 admitted", s)
	}

	// The running task finishes: the retry is admitted from the backlog.
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: running, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, running)
	if got := dequeue(t, b); got != r1 {
		t.Fatalf("dequeued %q after the slot freed, want the parked retry %s", got, r1)
	}
	if parked, err := b.d.Gate(ctx, q, r1, tn, "invoice:pdf"); err != nil || parked {
		t.Fatalf("Gate of the retry admitted from the backlog = %v, %v; want it to run", parked, err)
	}
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: r1, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, r1)

	// With a free slot a retry runs at once, counted: the tenant's next
	// task waits until its report.
	r2 := retried(2)
	if parked, err := b.d.Gate(ctx, q, r2, tn, "invoice:pdf"); err != nil || parked {
		t.Fatalf("Gate of a retry with a free slot = %v, %v; want it to run", parked, err)
	}
	enqueue(t, b, tn, p, 1, 1)
	if s := stats(t, b, tn); s.Admitted != 1 || s.Waiting != 1 {
		t.Fatalf("with the retry running: %+v; want it counted (1 admitted) and the new task waiting", s)
	}
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: r2, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Admitted != 1 || s.Waiting != 0 {
		t.Fatalf("after the retry's report: %+v; want the new task admitted", s)
	}

	// A held tenant's retry is parked whatever its cap.
	if _, err := b.d.Hold(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	r3 := retried(3)
	if parked, err := b.d.Gate(ctx, q, r3, tn, "invoice:pdf"); err != nil || !parked {
		t.Fatalf("Gate of a paused tenant's retry = %v, %v; want parked", parked, err)
	}
}
