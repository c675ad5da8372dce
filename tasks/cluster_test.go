package tasks

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestEnqueuerOnCluster runs the enqueuer on a real Redis Cluster (three
// masters): fair admission, dedupe and the waiting-task view, then plain
// enqueues on every queue completed by an asynq server on the cluster.
func TestEnqueuerOnCluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	t.Run("fair", func(t *testing.T) {
		enq, inspector, _, tn := fairSetupOn(t, c.ClientT(t), 1)
		testFairEnqueueWaitsAndDedupes(t, enq, inspector, tn)
	})
	t.Run("plain", func(t *testing.T) {
		rdb := c.ClientT(t)
		client := asynq.NewClientFromRedisClient(rdb)
		inspector := asynq.NewInspectorFromRedisClient(rdb)
		enq := NewEnqueuer(client, inspector, discardLogger())
		var runs sync.Map // task id -> *atomic.Int64 (the fair subtest's admitted tasks run here too)
		srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency: 4, Queues: QueueWeights, ShutdownTimeout: 5 * time.Second,
			DelayedTaskCheckInterval: time.Second, LogLevel: asynq.FatalLevel,
		})
		if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
			id, _ := asynq.GetTaskID(ctx)
			n, _ := runs.LoadOrStore(id, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			return nil
		})); err != nil {
			t.Fatalf("start asynq server on the cluster: %v", err)
		}
		t.Cleanup(srv.Shutdown)
		ctx := testContext(t)
		var ids []EnqueueResult
		for i := range 20 {
			r, err := enq.Enqueue(ctx, InvoicePDF{TenantID: "tn_cluster", InvoiceID: int64(i + 1)})
			if err != nil {
				t.Fatalf("enqueue on the cluster: %v", err)
			}
			ids = append(ids, r)
		}
		sweep, err := enq.Enqueue(ctx, SweepOverdue{Tick: 7})
		if err != nil {
			t.Fatalf("enqueue a sweep on the cluster: %v", err)
		}
		ids = append(ids, sweep)
		for _, r := range ids {
			testenv.WaitTaskState(t, inspector, r.Info.Queue, r.Info.ID, asynq.TaskStateCompleted)
		}
		for _, r := range ids {
			if n, ok := runs.Load(r.Info.ID); !ok || n.(*atomic.Int64).Load() != 1 {
				t.Errorf("task %s did not run exactly once", r.Info.ID)
			}
		}
		queues, err := inspector.Queues()
		if err != nil || len(queues) < 2 {
			t.Errorf("inspector queues on the cluster: %v, %v", queues, err)
		}
	})
}
