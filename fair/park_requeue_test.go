package fair_test

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// requeue does what asynq's shutdown does with a task whose handler it
// stops waiting for (its Requeue): the task goes from the active list back
// to the pending list, message unchanged. The handler's hand-back
// (asynq.RevokeTask), returned afterwards, never reaches asynq.
func requeue(t *testing.T, b bundle, id string) {
	t.Helper()
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	b.rdb.LRem(ctx, A+"active", 0, id)
	b.rdb.RPush(ctx, A+"pending", id)
	b.rdb.HSet(ctx, A+"t:"+id, "state", "pending")
}

// TestParkedTaskRequeuedNamesNoRun: asynq's copy of a parked task's
// message names no run, so that a worker that gets the task back from a
// shutdown's requeue (not from the release) asks the gate instead of
// running it as an admitted first attempt: the gate parks it again while
// its tenant is held. It runs once, after the release, and nothing brings
// it back after that run.
func TestParkedTaskRequeuedNamesNoRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_requeued"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b)
	if run, _ := runHeaderOf(t, b, id); run == "" {
		t.Fatal("admitted without a run header")
	}
	holdAndPark(t, b, tn, id, fair.Paused)
	requeue(t, b, id)
	if got := dequeue(t, b); got != id {
		t.Fatalf("dequeued %q, want the requeued %s", got, id)
	}
	if run, _ := runHeaderOf(t, b, id); run != "" {
		t.Fatalf("the parked task's message names run %q: a worker runs it as an admitted first attempt, past the gate", run)
	}
	parked, _, err := b.d.GateRun(ctx, q, id, tn, "invoice:pdf")
	if err != nil || !parked {
		t.Fatalf("GateRun of the requeued task of a paused tenant = %v, %v; want it parked again", parked, err)
	}
	done(t, b, id) // asynq.RevokeTask
	if s := stats(t, b, tn); s.Parked != 1 {
		t.Fatalf("stats after the second park: %+v; want the task parked", s)
	}

	if _, err := b.d.Release(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if got := dequeue(t, b); got != id {
		t.Fatalf("dequeued %q after the release, want %s", got, id)
	}
	run, _ := runHeaderOf(t, b, id)
	if run == "" {
		t.Fatal("admitted again without a run header")
	}
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: run}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, id)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := dequeue(t, b); got != "" {
		t.Fatalf("dequeued %q after its run: the task ran twice", got)
	}
	if s := stats(t, b, tn); s.Parked != 0 || s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("stats after the run: %+v; want nothing left", s)
	}
}
