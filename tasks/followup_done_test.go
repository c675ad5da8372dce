package tasks

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// TestRenderAskedForAfterBothRunsFinishedIsNotLost: with fair dispatch, a
// render whose run finished before its worker's report came in (a worker
// killed after asynq completed the task waits out its lease; a report in
// flight) is replaced by the next request, as a reported one is: that
// request is for an edit made after the run read the invoice. Answered
// with the finished run (or, as before, with a follow-up that finished
// too), no render of the edit would run.
func TestRenderAskedForAfterBothRunsFinishedIsNotLost(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	opt, rdb := newRedisClient(t)
	enq, inspector, _, tenants := fairSetupOn(t, rdb, 2)
	started := make(chan string, 8)
	// A plain asynq server: it completes tasks and never reports them to
	// the dispatcher, as a worker killed right after asynq completed them.
	startServer(t, opt, asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		started <- id
		return nil
	}), 2)
	completed := func(id string) {
		t.Helper()
		for {
			info, err := inspector.GetTaskInfo(QueueDefault, id)
			if err == nil && info.State == asynq.TaskStateCompleted {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s never completed: %+v, %v", id, info, err)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	p := InvoicePDF{TenantID: tenants[0].ID, InvoiceID: 7}
	first, err := enq.Enqueue(ctx, p)
	if err != nil || first.Existing {
		t.Fatalf("first request: %+v, %v", first, err)
	}
	receive(t, started)
	completed(first.Info.ID)
	again, err := enq.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if again.Existing {
		t.Fatalf("request after the first render finished: %+v, want a new task", again)
	}
	receive(t, started)
	completed(again.Info.ID)
	// The invoice is edited now, after both runs read it.
	last, err := enq.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if last.Existing || last.Info.State == asynq.TaskStateCompleted {
		t.Fatalf("request after both renders finished answered %s (existing=%v, state %v), which completed before the request: no render of the edit runs",
			last.Info.ID, last.Existing, last.Info.State)
	}
	// A render of the edit runs: the server starts the task the request
	// answered. (Its state read back could already be completed, by this
	// run: the answer itself says whether it was a new task.)
	if id := receive(t, started); id != last.Info.ID {
		t.Fatalf("after the request answered %s, the server started %s", last.Info.ID, id)
	}
}
