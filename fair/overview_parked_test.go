package fair_test

import (
	"context"
	"testing"

	"github.com/invoicing/tenantworker/fair"
)

// TestOverviewCountsParkedTasks: a held tenant's task parked with its
// message (asynq let it go) is in neither asynq's lists nor the tenant's
// backlog, so an operator shrinking QUEUE_SHARDS who waits for a shard's
// waiting, admitted and pending counts and its asynq queue to be empty
// (docs/operations.md, "Changing QUEUE_SHARDS") would drop a shard that still holds
// it: the overview must count it.
func TestOverviewCountsParkedTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	enqueue(t, b, "tn_held", fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b) // a worker got it just before the suspension
	holdAndPark(t, b, "tn_held", id, fair.Suspended)
	done(t, b, id) // the worker's asynq.RevokeTask: asynq forgets it
	o, err := b.d.Overview(ctx, q, 10)
	if err != nil {
		t.Fatal(err)
	}
	if o.Waiting != 0 || o.Admitted != 0 || o.Pending != 0 {
		t.Fatalf("overview = %+v, want nothing waiting, admitted or pending", o)
	}
	if n, _ := b.rdb.LLen(ctx, "asynq:{"+q+"}:pending").Result(); n != 0 {
		t.Fatalf("asynq pending = %d", n)
	}
	if o.Parked != 1 {
		t.Fatalf("overview parked = %d, want 1 (the task exists only in the dispatcher): %+v", o.Parked, o)
	}
	// Released, it goes back into the backlog and is no longer parked.
	afterHandBack(b)
	if _, err := b.d.Release(ctx, "tn_held", fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	if o, err = b.d.Overview(ctx, q, 10); err != nil || o.Parked != 0 || o.Waiting+o.Admitted != 1 {
		t.Fatalf("overview after release = %+v, %v; want the task back, none parked", o, err)
	}
}
