package tasks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/tenantctx"
)

// failFollowUps fails, while on, every script call that names a follow-up
// task id (FollowUpID): Redis failing just when a plain batch enqueues the
// follow-up of a running render.
type failFollowUps struct{ on *atomic.Bool }

func (failFollowUps) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f failFollowUps) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); f.on.Load() && (name == "evalsha" || name == "eval") &&
			strings.Contains(fmt.Sprint(cmd.Args()...), FollowUpID("")) {
			err := errors.New("injected failure")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (failFollowUps) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestPlainBatchFailingAtAFollowUpNamesOnlyWhatItDid: without fair
// dispatch a batch is enqueued one task at a time and a failure answers
// the results before it (the HTTP API's {"error","tasks"}). When the
// failure is the follow-up of a running render, the results must not
// answer that invoice with the running task, as if the render it asked
// for were on its way: the render running loaded the invoice before the
// request, and no follow-up was enqueued.
func TestPlainBatchFailingAtAFollowUpNamesOnlyWhatItDid(t *testing.T) {
	t.Parallel()
	opt := newRedis(t)
	var failing atomic.Bool
	rdb := redis.NewClient(&redis.Options{Addr: opt.Addr})
	rdb.AddHook(failFollowUps{on: &failing})
	t.Cleanup(func() { _ = rdb.Close() })
	enq := NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger())
	tn, err := tenantctx.New("plain-acme", "Plain", "free")
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	started, release := startBlockingServer(t, opt)
	defer close(release)

	running := InvoicePDF{TenantID: tn.ID, InvoiceID: 7}
	first, err := enq.Enqueue(ctx, running)
	if err != nil {
		t.Fatal(err)
	}
	if id := receive(t, started); id != first.Info.ID {
		t.Fatalf("running %s, want %s", id, first.Info.ID)
	}
	failing.Store(true)
	other := InvoicePDF{TenantID: tn.ID, InvoiceID: 8}
	res, err := enq.EnqueueMany(ctx, tn.ID, []Payload{other, running})
	if err == nil {
		t.Fatalf("batch with the follow-up failing: %+v, want an error", res)
	}
	for i, r := range res {
		if r.Info != nil && r.Info.ID == first.Info.ID {
			t.Fatalf("result %d of %d answers invoice 7 with its running task %s (state %s) although its follow-up failed: %v",
				i, len(res), r.Info.ID, r.Info.State, err)
		}
	}
	if len(res) != 1 || res[0].Info.ID != other.Spec().TaskID {
		t.Fatalf("results %+v: want invoice 8's task, enqueued before the failure", res)
	}
}
