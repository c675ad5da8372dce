package tasks

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestFollowUpDropsItsOldRecordThoughTheEnqueueWasSentAgain: a render asked
// for while the invoice's render runs gets its follow-up (FollowUpID), and
// the tenant's record of an earlier follow-up of that id, archived, goes:
// the new follow-up is that id now. go-redis sent the dispatcher's enqueue
// again after a read timeout; the second run found the follow-up the first
// added waiting and answered it as existing, so its old record stayed, and
// once the new follow-up had completed and asynq no longer kept it
// (retention), GET /v1/tasks/{id} showed the old follow-up's failure. A
// follow-up found waiting drops the old record too.
func TestFollowUpDropsItsOldRecordThoughTheEnqueueWasSentAgain(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	opt, rdb := newRedisClient(t)
	enq, inspector, _, tenants := fairSetupOn(t, rdb, 2)
	records := NewTaskRecords(rdb, TaskRecordsOptions{})
	enq = enq.WithTaskRecords(records)
	started, release := startBlockingServer(t, opt)
	p := InvoicePDF{TenantID: tenants[0].ID, InvoiceID: 7}
	first, err := enq.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if id := receive(t, started); id != first.Info.ID {
		t.Fatalf("running %s, want %s", id, first.Info.ID)
	}
	fid := FollowUpID(first.Info.ID)
	// An earlier follow-up of the invoice was archived (its asynq task
	// since deleted by the queue's archive cap): the tenant's record stays.
	if err := records.Put(ctx, tenants[0].ID, TaskRecord{TaskID: fid, Type: TypeInvoicePDF, Queue: QueueDefault, Reason: "invoice not found"}); err != nil {
		t.Fatal(err)
	}
	// The enqueue naming the follow-up sent twice (testenv.SendTwice),
	// once armed.
	var armed atomic.Bool
	hook := &testenv.SendTwice{Match: func(args []any) bool { return armed.Load() && slices.Contains(args, any(fid)) }}
	rdb.AddHook(hook)
	armed.Store(true)
	again, err := enq.Enqueue(ctx, p)
	armed.Store(false)
	if err != nil || again.Info.ID != fid {
		t.Fatalf("request while the render runs: %+v, %v; want the follow-up %s", again, err, fid)
	}
	if !hook.Fired() {
		t.Fatal("the hook never ran")
	}
	// The second run answers the follow-up its first run added as
	// existing (a 202 all the same): what must not follow from it is the
	// old record staying.
	t.Logf("request while the render runs, its enqueue sent twice: %s existing=%v", again.Info.ID, again.Existing)
	close(release)
	if id := receive(t, started); id != fid {
		t.Fatalf("ran %s after the render, want the follow-up %s", id, fid)
	}
	for {
		info, err := inspector.GetTaskInfo(QueueDefault, fid)
		if err == nil && info.State == asynq.TaskStateCompleted {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the follow-up never completed: %+v, %v", info, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Its retention ran out: asynq deletes the completed task.
	if err := inspector.DeleteTask(QueueDefault, fid); err != nil {
		t.Fatal(err)
	}
	info, err := enq.TenantTask(ctx, tenants[0].ID, fid)
	if err == nil {
		t.Errorf("the completed follow-up, after asynq let it go, reads %v (last error %q): the earlier follow-up's record", info.State, info.LastErr)
	} else if !errors.Is(err, ErrTaskNotFound) {
		t.Fatal(err)
	}
}
