package fair_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// parkForwarded parks the dequeued task id of held tenant tn, hands it to
// asynq's retry set as a worker of the previous release did with
// ErrTenantHeld, and then does what asynq's forwarder does once the task's
// hour there (that release's retry delay for a parked task) is up: the
// task is pending again in asynq's list, not admitted.
func parkForwarded(t *testing.T, b bundle, tn, id string) {
	t.Helper()
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	if ok, err := b.d.Park(ctx, q, id, tn, "invoice:pdf"); err != nil || !ok {
		t.Fatalf("Park = %v, %v", ok, err)
	}
	b.rdb.LRem(ctx, A+"active", 0, id)
	b.rdb.HSet(ctx, A+"t:"+id, "state", "retry")
	b.rdb.ZAdd(ctx, A+"retry", redis.Z{Score: float64(b.clock.Now().Add(time.Hour).Unix()), Member: id})
	b.clock.Advance(time.Hour + time.Minute)
	b.rdb.ZRem(ctx, A+"retry", id)
	b.rdb.LPush(ctx, A+"pending", id)
	b.rdb.HSet(ctx, A+"t:"+id, "state", "pending")
}

// TestReleasedParkedTaskForwardedToPendingIsAdmitted: a task parked for
// longer than its hour in asynq's retry set is pending in asynq again when
// the hold is released. It goes back to its tenant's backlog like any
// parked task and is admitted in turn, under the running cap, instead of
// being run by asynq unaccounted (a retry count of 0 passes the worker's
// gate) next to the tasks admitted up to the cap.
func TestReleasedParkedTaskForwardedToPendingIsAdmitted(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	ctx := context.Background()
	const tn = "tn_fwd"
	A := "asynq:{" + q + "}:"
	enqueue(t, b, tn, fair.Policy{Weight: 1, MaxRunning: 1}, 0, 3)
	id := dequeue(t, b)
	if _, err := b.d.Hold(ctx, tn, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	parkForwarded(t, b, tn, id)
	if _, err := b.d.Release(ctx, tn, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	pending, err := b.rdb.LRange(ctx, A+"pending", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pending {
		if ok, _ := b.rdb.HExists(ctx, "fair:{"+q+"}:adm", p).Result(); !ok {
			t.Errorf("task %s is pending in asynq but not admitted: it runs past the running cap", p)
		}
	}
	if len(pending) != 1 || pending[0] != id {
		t.Errorf("asynq pending = %v, want only the released %s (running cap 1)", pending, id)
	}
	if s := stats(t, b, tn); s.Parked != 0 || s.Admitted != 1 || s.Waiting != 2 {
		t.Errorf("after release: %+v; want 1 admitted, 2 waiting, none parked", s)
	}
}

// TestDrainDiscardsParkedTaskForwardedToPending: Drain discards a parked
// task that asynq's forwarder has already made pending again, like one
// still in the retry set; it used to forget the parked record and leave
// the task in asynq's list, to run after the drain.
func TestDrainDiscardsParkedTaskForwardedToPending(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	ctx := context.Background()
	const tn = "tn_fwddrain"
	A := "asynq:{" + q + "}:"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 2)
	id := dequeue(t, b)
	if _, err := b.d.Hold(ctx, tn, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	parkForwarded(t, b, tn, id)
	n, err := b.d.Drain(ctx, tn, q)
	if err != nil {
		t.Fatal(err)
	}
	if n.Total() != 2 || n.Parked != 1 {
		t.Errorf("Drain = %+v, want the waiting task and the parked one", n)
	}
	if l, _ := b.rdb.LLen(ctx, A+"pending").Result(); l != 0 {
		t.Errorf("asynq pending holds %d tasks after the drain, want none", l)
	}
	if ok, _ := b.rdb.Exists(ctx, A+"t:"+id).Result(); ok != 0 {
		t.Errorf("drained task %s still in asynq", id)
	}
}

// TestParkAndGateRefuseATypeWithATab: the type a worker hands Park and
// Gate is stored tab-separated in the parked and admitted records; a tab
// in it would shift their fields (Gate's record would read a time as the
// weight its estimate was charged over, and the task's cost would charge
// its tenant next to nothing). Both refuse it, as Enqueue does.
func TestParkAndGateRefuseATypeWithATab(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_tabtype"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	if _, err := b.d.Gate(ctx, q, "x:1", tn, "invoice:pdf\t0"); err == nil {
		t.Error("Gate accepted a type with a tab")
	}
	if _, err := b.d.Hold(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if _, err := b.d.Park(ctx, q, "x:2", tn, "invoice:pdf\t0"); err == nil {
		t.Error("Park accepted a type with a tab")
	}
	// Enqueue stores the type tab-separated in the waiting record.
	tab := task(tn, 2)
	tab.Message.Type = "invoice:pdf\t0"
	if _, err := b.d.Enqueue(ctx, tn, fair.Policy{Weight: 1}, []fair.Task{tab}); err == nil {
		t.Error("Enqueue accepted a type with a tab")
	}
}
