package fair_test

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// The tests here delete some of the dispatcher's keys, as Redis does when
// it loses part of its data (an evicting maxmemory-policy, a key deleted
// by hand): the workers' heartbeats must bring every tenant's waiting
// tasks back into admission, and no tenant may stay capped or answered
// "waiting" for tasks nothing will ever admit.

// TestHeartbeatReadmitsABacklogOutOfTheReadySet: a tenant whose backlog
// lost its place in the ready set (the set evicted or deleted) is admitted
// again by the next heartbeat, not only by its next enqueue.
func TestHeartbeatReadmitsABacklogOutOfTheReadySet(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	// tn_busy's two tasks fill the pending list; tn_unready's wait.
	enqueue(t, b, "tn_busy", fair.Policy{Weight: 1}, 0, 2)
	enqueue(t, b, "tn_unready", fair.Policy{Weight: 1}, 0, 3)
	if s := stats(t, b, "tn_unready"); s.Waiting != 3 {
		t.Fatalf("before the loss: %+v", s)
	}
	// The ready set is lost; tn_busy's tasks run and are reported.
	if err := b.rdb.Del(ctx, "fair:{"+q+"}:ready").Err(); err != nil {
		t.Fatal(err)
	}
	work(t, b, 2, equalCost)
	if err := b.d.Heartbeat(ctx, q, "w1", 4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := work(t, b, 10, equalCost); len(got) != 3 {
		t.Fatalf("after the heartbeat %d of the 3 waiting tasks ran: %+v", len(got), stats(t, b, "tn_unready"))
	}
}

// TestHeartbeatRebuildsALostBacklog: the waiting tasks' records are there
// but the tenant's backlog list is gone. They are not lost: the heartbeat
// puts them back into the backlog, in enqueue order, and they run; an
// enqueue of one of their ids meanwhile is answered "waiting" (existing),
// which then holds.
func TestHeartbeatRebuildsALostBacklog(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	for i := range 4 {
		enqueue(t, b, "tn_nolist", fair.Policy{Weight: 1}, 3-i, 1) // 3 first: the order is the enqueue time's
		b.clock.Advance(time.Millisecond)
	}
	// Task 3 is admitted; 2, 1, 0 wait. Their list is lost.
	if err := b.rdb.Del(ctx, "fair:{"+q+"}:b:tn_nolist").Err(); err != nil {
		t.Fatal(err)
	}
	// An enqueue of a waiting id meanwhile finds it waiting: it will run.
	if res := enqueue(t, b, "tn_nolist", fair.Policy{Weight: 1}, 2, 1); !res[0].Existing {
		t.Fatalf("enqueue of a waiting task: %+v", res[0])
	}
	if err := b.d.Heartbeat(ctx, q, "w1", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var ran []string
	for range 10 {
		id := dequeue(t, b)
		if id == "" {
			break
		}
		ran = append(ran, id)
		if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: "tn_nolist", Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
			t.Fatal(err)
		}
		done(t, b, id)
	}
	want := []string{"invoice:pdf:tn_nolist:3", "invoice:pdf:tn_nolist:2", "invoice:pdf:tn_nolist:1", "invoice:pdf:tn_nolist:0"}
	if len(ran) != len(want) {
		t.Fatalf("ran %v, want %v (stats %+v)", ran, want, stats(t, b, "tn_nolist"))
	}
	for i := range want {
		if ran[i] != want[i] {
			t.Fatalf("ran %v, want %v", ran, want)
		}
	}
	if s := stats(t, b, "tn_nolist"); s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("after the tasks ran: %+v", s)
	}
}

// TestHeartbeatFreesASlotWhoseLeaseIsLost: an admitted task's lease entry
// is gone, and so is the task in asynq (the same loss): its tenant's slot
// must not stay taken forever at its running cap.
func TestHeartbeatFreesASlotWhoseLeaseIsLost(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	ctx := context.Background()
	enqueue(t, b, "tn_nolease", fair.Policy{Weight: 1, MaxRunning: 1}, 0, 2)
	id := dequeue(t, b)
	// Redis loses the lease set and the task: no report ever comes.
	if err := b.rdb.Del(ctx, "fair:{"+q+"}:dl").Err(); err != nil {
		t.Fatal(err)
	}
	done(t, b, id)
	for range 3 {
		b.clock.Advance(fair.DefaultLease + time.Second)
		if err := b.d.Heartbeat(ctx, q, "w1", 4, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if s := stats(t, b, "tn_nolease"); s.Admitted != 1 || s.Waiting != 0 {
		t.Fatalf("three leases after the loss the tenant is still capped: %+v", s)
	}
}

// TestHealRunsOncePerPeriod: of the heartbeats of all workers within
// Config.HealEvery, one repairs and the others do not look, so the
// repair's cost does not grow with the number of workers.
func TestHealRunsOncePerPeriod(t *testing.T) {
	t.Parallel()
	b := setupConfig(t, fair.Config{MinPending: 2, PendingPerSlot: 1, PendingTime: time.Microsecond, HealEvery: time.Hour})
	ctx := context.Background()
	enqueue(t, b, "tn_busy", fair.Policy{Weight: 1}, 0, 2)
	enqueue(t, b, "tn_unready", fair.Policy{Weight: 1}, 0, 5)
	beat := func(worker string, lose bool) fair.Healed {
		t.Helper()
		if lose {
			if err := b.rdb.Del(ctx, "fair:{"+q+"}:ready").Err(); err != nil {
				t.Fatal(err)
			}
		}
		h, err := fair.HeartbeatHealed(b.d, ctx, q, worker, 1, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if h := beat("w1", true); h.Readied != 1 {
		t.Fatalf("first beat after the loss: %+v, want the waiting tenant readied", h)
	}
	if h := beat("w2", true); h != (fair.Healed{}) {
		t.Fatalf("another worker's beat within the period: %+v, want no repair", h)
	}
	// The period is over (its key expired).
	if err := b.rdb.Del(ctx, "fair:{"+q+"}:healed").Err(); err != nil {
		t.Fatal(err)
	}
	if h := beat("w2", false); h.Readied != 1 {
		t.Fatalf("a beat after the period: %+v, want the waiting tenant readied", h)
	}
}

// TestHeartbeatRestoresALostAdmissionRecord: an admitted task that asynq
// still runs lost its admission record (the record hash evicted or
// deleted): the heartbeat gives it one back, so the run's report frees its
// tenant's slot at once and the next task is admitted, as without the
// loss.
func TestHeartbeatRestoresALostAdmissionRecord(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	ctx := context.Background()
	enqueue(t, b, "tn_norecord", fair.Policy{Weight: 1, MaxRunning: 1}, 0, 2)
	id := dequeue(t, b)
	if err := b.rdb.Del(ctx, "fair:{"+q+"}:adm").Err(); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(2 * fair.DefaultHealEvery)
	if err := b.d.Heartbeat(ctx, q, "w1", 4, time.Hour); err != nil {
		t.Fatal(err)
	}
	rep := fair.Report{Queue: q, TaskID: id, TenantID: "tn_norecord", Type: "invoice:pdf", Cost: time.Second}
	if err := b.d.Complete(ctx, q, []fair.Report{rep}); err != nil {
		t.Fatal(err)
	}
	done(t, b, id)
	if s := stats(t, b, "tn_norecord"); s.Admitted != 1 || s.Waiting != 0 {
		t.Fatalf("after the running task's report: %+v, want its slot free and the second task admitted", s)
	}
	if got := work(t, b, 10, equalCost); len(got) != 1 {
		t.Fatalf("%d tasks ran after the report, want the second one", len(got))
	}
}
