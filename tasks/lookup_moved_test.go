package tasks

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// afterBacklogLook is a go-redis hook that calls do once, right after the
// first pipeline that looks a task id up in a queue's backlog records
// (fair.Dispatcher.Waiting: HGET fair:{q}:msg id): what another process
// does between TenantTask's look at the backlog and its look at asynq.
type afterBacklogLook struct {
	once sync.Once
	do   func()
}

func (h *afterBacklogLook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *afterBacklogLook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *afterBacklogLook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if len(cmds) > 0 {
			args := cmds[0].Args()
			if name, _ := args[0].(string); strings.EqualFold(name, "hget") && len(args) == 3 {
				if key, _ := args[1].(string); h.do != nil && strings.HasPrefix(key, "fair:{") && strings.HasSuffix(key, "}:msg") {
					h.once.Do(h.do)
				}
			}
		}
		return err
	}
}

// TestTenantTaskFindsATaskAHoldMovesBackMeanwhile: a task that an operator's
// pause moves from asynq's pending list back into its tenant's backlog
// while TenantTask looks (after its look at the backlog, before its look
// at asynq) is still found, pending: it was in neither place when looked
// at there, and was reported not found.
func TestTenantTaskFindsATaskAHoldMovesBackMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	opt, raw := newRedisClient(t)
	rdb := redis.NewClient(&redis.Options{Addr: opt.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	hook := &afterBacklogLook{}
	rdb.AddHook(hook)
	enq, inspector, _, tn := fairSetupOn(t, rdb, 1)
	res, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tn[0].ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Info.ID
	if info, err := inspector.GetTaskInfo(QueueDefault, id); err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("not admitted: %+v, %v", info, err)
	}
	other := fair.New(raw, fair.Config{MinPending: 1})
	hook.do = func() {
		if moved, err := other.Hold(ctx, tn[0].ID, fair.Paused, QueueDefault); err != nil || moved != 1 {
			t.Errorf("hold moved %d tasks back, %v; want 1", moved, err)
		}
	}
	info, err := enq.TenantTask(ctx, tn[0].ID, id)
	if err != nil || info.State != asynq.TaskStatePending || info.ID != id {
		t.Fatalf("TenantTask of the task a pause moved back into its backlog meanwhile = %+v, %v; want it pending", info, err)
	}
}
