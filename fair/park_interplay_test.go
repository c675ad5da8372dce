package fair_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestGateLetsRunAParkedTaskAsynqRetried: a retry Gate parked at its
// tenant's running cap (its message kept) whose worker lost its lease
// before handing it back is retried by asynq's recoverer instead of let
// go. When that retry comes back and Gate lets it run, the kept record is
// of this very task, which asynq did not let go: it must not be released
// into the backlog once the run is over, or the task runs a second time.
func TestGateLetsRunAParkedTaskAsynqRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	const tn = "tn_gate_rerun"
	pol := fair.Policy{Weight: 1, MaxRunning: 1}
	enqueue(t, b, tn, pol, 0, 2)
	id := dequeue(t, b)
	// Its first attempt fails: reported, asynq retries it; the other task
	// takes the slot.
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	other := dequeue(t, b)
	if other == "" || other == id {
		t.Fatalf("dequeued %q, want the other task admitted in the freed slot", other)
	}
	// The retry comes back at the cap: parked, its message kept.
	if parked, _, err := b.d.GateRun(ctx, q, id, tn, "invoice:pdf"); err != nil || !parked {
		t.Fatalf("GateRun at the cap = %v, %v; want parked", parked, err)
	}
	// The worker's lease ran out before it handed the task back
	// (asynq's markAsDone writes nothing then): the recoverer retries it,
	// and the forwarder makes it pending again.
	b.rdb.LRem(ctx, A+"active", 0, id)
	b.rdb.HSet(ctx, A+"t:"+id, "state", "pending")
	b.rdb.LPush(ctx, A+"pending", id)
	// The other task finishes; the slot is free.
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: other, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, other)
	if got := dequeue(t, b); got != id {
		t.Fatalf("dequeued %q, want the retried %s", got, id)
	}
	parked, run, err := b.d.GateRun(ctx, q, id, tn, "invoice:pdf")
	if err != nil || parked {
		t.Fatalf("GateRun with the slot free = %v, %v; want it to run", parked, err)
	}
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: run}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, id)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := dequeue(t, b); got != "" {
		t.Fatalf("dequeued %q after its run was over: the task ran twice", got)
	}
	if s := stats(t, b, tn); s.Parked != 0 || s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("stats after the run: %+v; want nothing left", s)
	}
}

// TestDrainCountsParkedTaskBeingHandedBack: a drain while the worker of a
// task parked with its message is still handing it back (asynq holds it
// as active) discards it: its record goes, and asynq lets it go. The
// drain counts it, and the release brings nothing back.
func TestDrainCountsParkedTaskBeingHandedBack(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_drain_handback"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b)
	holdAndPark(t, b, tn, id, fair.Suspended)
	n, err := b.d.Drain(ctx, tn, q)
	if err != nil {
		t.Fatal(err)
	}
	done(t, b, id) // asynq.RevokeTask: asynq deletes the task
	if _, err := b.d.Release(ctx, tn, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := dequeue(t, b); got != "" {
		t.Fatalf("dequeued %q: a drained task came back", got)
	}
	if n.Parked != 1 || n.Total() != 1 {
		t.Fatalf("Drain = %+v; want the parked task it discarded counted", n)
	}
}

// TestKeptTaskAdmittedAgainRunsUnderItsNewRun: a parked task's kept
// message carries the run header of the admission it was parked from.
// Admitted again, asynq's message names the new run only; a late report
// naming the parked run leaves the new run's slot taken (the tenant
// stays under its running cap of 1), and the new run's report frees it.
func TestKeptTaskAdmittedAgainRunsUnderItsNewRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_kept_run"
	pol := fair.Policy{Weight: 1, MaxRunning: 1}
	enqueue(t, b, tn, pol, 0, 2)
	id := dequeue(t, b)
	parkedRun, _ := runHeaderOf(t, b, id)
	holdAndPark(t, b, tn, id, fair.Suspended)
	done(t, b, id) // asynq.RevokeTask: asynq deletes the task
	afterHandBack(b)
	if n, err := b.d.Release(ctx, tn, fair.Suspended, q); err != nil || n != 0 {
		t.Fatalf("Release = %d, %v", n, err)
	}
	if got := dequeue(t, b); got != id {
		t.Fatalf("dequeued %q, want the released %s", got, id)
	}
	run, _ := runHeaderOf(t, b, id)
	if run == "" || run == parkedRun || run != recordedRun(t, b, id) {
		t.Fatalf("run header %q (parked under %q, recorded %q): want the new admission's", run, parkedRun, recordedRun(t, b, id))
	}
	late := fair.Report{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: parkedRun}
	if err := b.d.Complete(ctx, q, []fair.Report{late}); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Admitted != 1 || s.Waiting != 1 {
		t.Fatalf("after a report of the parked run: %+v; want the new run admitted, the other task waiting", s)
	}
	late.Run = run
	if err := b.d.Complete(ctx, q, []fair.Report{late}); err != nil {
		t.Fatal(err)
	}
	done(t, b, id)
	if got := dequeue(t, b); got == "" || got == id {
		t.Fatalf("dequeued %q after the new run's report, want the other task", got)
	}
}

// TestInterruptedDrainHeldTenantAndKeptTask: a task parked with its
// message while a drain of its held tenant is cut off between steps
// stays parked (it was running when the drain began); the heartbeat puts
// what the drain set aside back while the tenant is held, without
// admitting it; the release brings the parked task back too. Every task
// then runs once.
func TestInterruptedDrainHeldTenantAndKeptTask(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_dr_kept_held"
	const total = 6002
	for from := 0; from < total; from += 1000 {
		enqueue(t, b, tn, fair.Policy{Weight: 1}, from, min(1000, total-from))
	}
	id := dequeue(t, b)
	if _, err := b.d.Hold(ctx, tn, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	n := cutDrain(t, b, tn)
	if ok, err := b.d.Park(ctx, q, id, tn, "invoice:pdf"); err != nil || !ok {
		t.Fatalf("Park = %v, %v", ok, err)
	}
	done(t, b, id) // asynq.RevokeTask
	b.clock.Advance(61 * time.Second)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := dequeue(t, b); got != "" {
		t.Fatalf("dequeued %q of a held tenant", got)
	}
	if s := stats(t, b, tn); s.Parked != 1 || s.Waiting != total-1-n.Total() {
		t.Fatalf("after the heartbeat: %+v; want 1 parked, %d waiting (drained %+v)", s, total-1-n.Total(), n)
	}
	if _, err := b.d.Release(ctx, tn, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	ran := map[string]int{}
	for {
		got := dequeue(t, b)
		if got == "" {
			break
		}
		ran[got]++
		if ran[got] > 1 {
			t.Fatalf("%s ran twice", got)
		}
		if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: got, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
			t.Fatal(err)
		}
		done(t, b, got)
	}
	if ran[id] != 1 || len(ran) != total-n.Total() {
		t.Fatalf("%d tasks ran (the parked one %d times); want %d: the parked one and what the drain did not discard", len(ran), ran[id], total-n.Total())
	}
	if s := stats(t, b, tn); s.Parked != 0 || s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("at the end: %+v; want nothing left", s)
	}
}

// TestInterruptedDrainKeepsTheBacklogUnderMaxWaiting: what a drain set
// aside and did not discard counts as waiting until it is discarded: a
// drain cut off between its steps puts it back into the backlog, and the
// tasks enqueued meanwhile must not take the backlog past max waiting
// then.
func TestInterruptedDrainKeepsTheBacklogUnderMaxWaiting(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_dr_maxwaiting"
	const mw = 6000
	pol := fair.Policy{Weight: 1, MaxWaiting: mw}
	for from := 0; from < mw; from += 1000 {
		enqueue(t, b, tn, pol, from, 1000)
	}
	n := cutDrain(t, b, tn)
	refused := false
	for from := 10_000; from < 10_000+mw && !refused; from += 1000 {
		var tasks []fair.Task
		for i := from; i < from+1000; i++ {
			tasks = append(tasks, task(tn, i))
		}
		_, err := b.d.Enqueue(ctx, tn, pol, tasks)
		switch {
		case errors.Is(err, fair.ErrBacklogFull):
			refused = true
		case err != nil:
			t.Fatal(err)
		}
	}
	b.clock.Advance(61 * time.Second)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Waiting > mw || !refused {
		t.Fatalf("after the cut drain (%+v) was put back: %d waiting, an enqueue refused: %v; want at most %d waiting", n, s.Waiting, refused, mw)
	}
}
