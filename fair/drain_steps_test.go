package fair_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// handBack does what asynq did with a task a worker of the previous
// release parked (its ErrTenantHeld was retried an hour later): the task
// moves from the active list to the retry set. Such records, without a
// kept message, are still handled.
func handBack(t *testing.T, b bundle, id string) {
	t.Helper()
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	b.rdb.LRem(ctx, A+"active", 0, id)
	b.rdb.HSet(ctx, A+"t:"+id, "state", "retry")
	b.rdb.ZAdd(ctx, A+"retry", redis.Z{Score: float64(b.clock.Now().Add(time.Hour).Unix()), Member: id})
}

// inAsynq says where asynq has task id ("" when it has none).
func inAsynq(t *testing.T, b bundle, id string) string {
	t.Helper()
	st, err := b.rdb.HGet(context.Background(), "asynq:{"+q+"}:t:"+id, "state").Result()
	if err == redis.Nil {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestDrainStepsDiscardWhatWaitedNotHowMany: a drain over more than one
// step discards the tasks that waited when it began, all of them, and no
// other: a task running then, parked and released back to the front of
// the backlog between its steps, stays, and so do tasks enqueued
// meanwhile. It used to discard by count from the backlog's front: the
// released task went in place of the last old one, which stayed.
func TestDrainStepsDiscardWhatWaitedNotHowMany(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_dr_which"
	const old = 6002
	enqueueBacklog(t, b, tn, old)
	running := dequeue(t, b)
	if _, err := b.d.Hold(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	before := stats(t, b, tn) // 6,001 waiting, 1 running
	d2 := otherProcess(t, b)
	n := drainAround(t, b, tn, func() {
		// Between the steps: the running task is parked (the tenant is
		// paused) and released to the front of the backlog, and the
		// tenant enqueues more.
		if ok, err := d2.Park(ctx, q, running, tn, "invoice:pdf"); err != nil || !ok {
			t.Errorf("Park = %v, %v", ok, err)
		}
		handBack(t, b, running)
		if _, err := d2.Release(ctx, tn, fair.Paused, q); err != nil {
			t.Errorf("release during the drain: %v", err)
		}
		enqueueThrough(t, d2, tn, 10_000, 100)
	})
	after := stats(t, b, tn)
	t.Logf("before: %d waiting; drained %+v; after: %d waiting, %d admitted", before.Waiting, n, after.Waiting, after.Admitted)
	if n.Waiting != before.Waiting {
		t.Errorf("Drain discarded %d waiting tasks, want the %d that waited when it began", n.Waiting, before.Waiting)
	}
	var left []string
	for i := 1; i < old; i++ {
		id := task(tn, i).Message.ID
		if _, ok, _ := b.d.Waiting(ctx, id, q); ok || inAsynq(t, b, id) != "" {
			left = append(left, id)
		}
	}
	if len(left) > 0 {
		t.Errorf("%d tasks that waited when the drain began are still there: %v", len(left), left)
	}
	if _, ok, _ := b.d.Waiting(ctx, running, q); !ok && inAsynq(t, b, running) != "pending" {
		t.Errorf("the task running when the drain began (released between its steps) was discarded")
	}
	if kept := after.Waiting + after.Admitted; kept != 101 {
		t.Errorf("kept %d tasks, want the 100 enqueued during the drain and the released one", kept)
	}
}

// TestDrainStepsKeepWhatWasEnqueuedAfterIt: two drains of one tenant
// overlap: the second, between the first's steps, discards what waited
// when it began, including what the first set aside and has not
// discarded yet. Tasks enqueued after both began stay; the first used to
// take them (its steps counted tasks from the backlog's front, and the
// second had taken the ones it counted).
func TestDrainStepsKeepWhatWasEnqueuedAfterIt(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_dr_overlap"
	const old = 6002
	enqueueBacklog(t, b, tn, old)
	before := stats(t, b, tn)
	d2 := otherProcess(t, b)
	var second fair.Drained
	first := drainAround(t, b, tn, func() {
		enqueueThrough(t, d2, tn, 10_000, 100)
		var err error
		if second, err = d2.Drain(ctx, tn, q); err != nil {
			t.Errorf("second drain: %v", err)
		}
		enqueueThrough(t, d2, tn, 20_000, 100)
	})
	after := stats(t, b, tn)
	t.Logf("before: %d waiting %d admitted; drained %+v and %+v; after: %d waiting, %d admitted", before.Waiting, before.Admitted, first, second, after.Waiting, after.Admitted)
	// The second drain finishes what the first had set aside, as the
	// first would: together they discard what waited when each began.
	if all := first.Total() + second.Total(); all != before.Waiting+before.Admitted+100 {
		t.Errorf("the drains discarded %d tasks, want the %d there when the first began and the 100 enqueued before the second", all, before.Waiting+before.Admitted)
	}
	lost := 0
	for i := 20_000; i < 20_100; i++ {
		id := task(tn, i).Message.ID
		if _, ok, _ := b.d.Waiting(ctx, id, q); !ok && inAsynq(t, b, id) != "pending" {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of the 100 tasks enqueued after both drains began were discarded", lost)
	}
	if kept := after.Waiting + after.Admitted; kept != 100 {
		t.Errorf("kept %d tasks, want the 100 enqueued after both drains began", kept)
	}
}

// TestDrainInterruptedBetweenStepsPutsTheRestBack: a drain whose caller
// goes away between its steps (killed) discards what its steps did; once
// its mark expires, a heartbeat puts the rest back at the front of the
// backlog, in order, ahead of what was enqueued since, and the tenant is
// admitted again. Nothing is lost.
func TestDrainInterruptedBetweenStepsPutsTheRestBack(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_dr_killed"
	const old = 6002
	enqueueBacklog(t, b, tn, old)
	n := cutDrain(t, b, tn)
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 10_000, 10)
	// The drain's mark runs out a minute after its last step.
	b.clock.Advance(61 * time.Second)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	s := stats(t, b, tn)
	t.Logf("drained %+v before the cut; then %+v", n, s)
	if want := old - n.Total() + 10; s.Waiting+s.Admitted != want {
		t.Fatalf("after the heartbeat: %d waiting, %d admitted; want %d (what the drain did not discard, and the 10 enqueued since)", s.Waiting, s.Admitted, want)
	}
	// The rest comes back in order, ahead of the newer tasks, and is
	// admitted: the drain's first step took the admitted task 0 and the
	// waiting tasks 1 to 5,000.
	for i := range 3 {
		id := dequeue(t, b)
		if want := task(tn, n.Total()+i).Message.ID; id != want {
			t.Fatalf("dequeued %q, want %s, the oldest the drain did not discard", id, want)
		}
		rep := fair.Report{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}
		if err := b.d.Complete(ctx, q, []fair.Report{rep}); err != nil {
			t.Fatal(err)
		}
		done(t, b, id)
	}
	if _, ok, _ := b.d.Waiting(ctx, task(tn, old-1).Message.ID, q); !ok {
		t.Errorf("the last task that waited (not reached by the drain's first step) is not back in the backlog")
	}
}

// cutDrain runs a drain of tn that its caller abandons after the first
// step (killed between steps) and returns what that step discarded.
func cutDrain(t *testing.T, b bundle, tn string) fair.Drained {
	t.Helper()
	dctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fired atomic.Bool
	b.rdb.AddHook(afterDrainStep{tenant: tn, fired: &fired, fn: cancel})
	n, err := b.d.Drain(dctx, tn, q)
	if err == nil || !fired.Load() {
		t.Fatalf("Drain = %+v, %v; want it cut off after its first step", n, err)
	}
	return n
}

// TestDrainAfterAnInterruptedDrainTakesItsRest: a drain that begins while
// an interrupted one's mark still runs discards what that one set aside
// and did not discard (it waited when the new drain began) along with the
// backlog, and nothing comes back once the old mark runs out.
func TestDrainAfterAnInterruptedDrainTakesItsRest(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_dr_again"
	const old = 6002
	enqueueBacklog(t, b, tn, old)
	first := cutDrain(t, b, tn)
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 10_000, 10)
	second, err := otherProcess(t, b).Drain(ctx, tn, q)
	if err != nil {
		t.Fatal(err)
	}
	if all := first.Total() + second.Total(); all != old+10 {
		t.Errorf("drained %+v, then %+v: %d in all, want %d", first, second, all, old+10)
	}
	b.clock.Advance(61 * time.Second)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Waiting+s.Admitted != 0 {
		t.Errorf("after the second drain and a heartbeat: %+v; want nothing back", s)
	}
	if _, total, err := b.d.Top(ctx, q, 1); err != nil || total != 0 {
		t.Errorf("tasks waiting in the queue: %d, %v; want none", total, err)
	}
}

// TestForgetRemovesWhatAnInterruptedDrainSetAside: Forget removes the
// tasks an interrupted drain set aside and did not discard, as it removes
// a backlog; they do not come back into the erased tenant's backlog.
func TestForgetRemovesWhatAnInterruptedDrainSetAside(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_dr_forget"
	const old = 6002
	enqueueBacklog(t, b, tn, old)
	cutDrain(t, b, tn)
	if err := b.d.Forget(ctx, tn, q); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(61 * time.Second)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, total, err := b.d.Top(ctx, q, 1); err != nil || total != 0 {
		t.Errorf("tasks waiting in the queue after Forget: %d, %v; want none", total, err)
	}
	if s := stats(t, b, tn); s.Waiting != 0 {
		t.Errorf("forgotten tenant: %+v; want nothing waiting", s)
	}
}

// TestStatsCountWhatADrainSetAside: the tasks a drain cut off between its
// steps set aside still wait (the next heartbeat after its mark puts them
// back), so Stats counts them as waiting, and the oldest of them sets the
// oldest wait, not the newer backlog.
func TestStatsCountWhatADrainSetAside(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	const tn = "tn_dr_stats"
	const old = 6002
	enqueueBacklog(t, b, tn, old)
	n := cutDrain(t, b, tn)
	b.clock.Advance(30 * time.Second)
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 10_000, 10)
	s := stats(t, b, tn)
	if want := old - n.Total() + 10; s.Waiting != want {
		t.Fatalf("stats while a drain's rest is set aside: %d waiting, want %d (the %d it did not discard and the 10 enqueued since)", s.Waiting, want, old-n.Total())
	}
	if s.OldestWait < 30*time.Second {
		t.Fatalf("oldest wait %v; want at least 30s, the set-aside tasks'", s.OldestWait)
	}
}
