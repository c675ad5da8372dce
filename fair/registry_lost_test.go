package fair_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestQueueRegistryLostWithRedisDataIsWrittenAgain: asynq's set of queues
// (asynq:queues), which its inspector, the dashboard and the worker's
// asynq queue metrics list the queues from, goes with a loss of Redis's
// data; the enqueue services (the dispatcher and asynq's client alike)
// add a queue to it once per process, so it stayed empty until they
// restarted, and the dashboard and those metrics showed no queue while
// tasks were enqueued and run. The heartbeat or enqueue that finds the
// loss (and puts the holds back) registers its queue again.
func TestQueueRegistryLostWithRedisDataIsWrittenAgain(t *testing.T) {
	t.Parallel()
	for _, found := range []string{"heartbeat", "enqueue"} {
		t.Run("found by "+found, func(t *testing.T) {
			t.Parallel()
			b := setupHolds(t, 1)
			ins := asynq.NewInspectorFromRedisClient(b.rdb)
			enqueue(t, b.bundle, "tn_a", fair.Policy{Weight: 1}, 0, 1)
			if qs, err := ins.Queues(); err != nil || !slices.Equal(qs, []string{q}) {
				t.Fatalf("asynq's queues before the loss: %v, %v; want [%s]", qs, err, q)
			}
			b.flush(t)
			if found == "heartbeat" {
				b.beat(t)
			} else {
				enqueue(t, b.bundle, "tn_a", fair.Policy{Weight: 1}, 1, 1)
			}
			if qs, err := ins.Queues(); err != nil || !slices.Equal(qs, []string{q}) {
				t.Fatalf("asynq's queues after the %s that found the loss: %v, %v; want [%s]", found, qs, err, q)
			}
		})
	}
}

// TestQueueDeletedFromTheDashboardIsRegisteredAgainByAHeartbeat: the
// dashboard offers to delete a queue asynq holds no task of (asynq's
// Inspector.DeleteQueue), which is common with fair dispatch (the work
// waits in the backlogs, or the system is idle), and takes it out of
// asynq's set of queues. The processes add a queue to that set once, so
// the dashboard and the worker's asynq queue metrics no longer listed the
// queue, while tasks went on being admitted and run there, until every
// process restarted. A worker's heartbeat registers its queues again.
func TestQueueDeletedFromTheDashboardIsRegisteredAgainByAHeartbeat(t *testing.T) {
	t.Parallel()
	b := setupHolds(t, 1)
	ins := asynq.NewInspectorFromRedisClient(b.rdb)
	b.beat(t)
	res := enqueue(t, b.bundle, "tn_a", fair.Policy{Weight: 1}, 0, 1)
	if qs, err := ins.Queues(); err != nil || !slices.Equal(qs, []string{q}) {
		t.Fatalf("asynq's queues after an enqueue: %v, %v; want [%s]", qs, err, q)
	}
	if err := ins.DeleteTask(q, res[0].ID); err != nil { // the queue is empty in asynq now
		t.Fatal(err)
	}
	if err := ins.DeleteQueue(q, false); err != nil { // the dashboard's "delete" of the queue
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	var served sync.WaitGroup
	served.Go(func() {
		b.d.Serve(ctx, fair.Membership{ID: "w1", Queues: []string{q}, Concurrency: 4, Interval: 10 * time.Millisecond}, slog.New(slog.DiscardHandler))
	})
	t.Cleanup(func() { stop(); served.Wait() })
	testenv.WaitFor(t, 30*time.Second, "the worker's heartbeat to register the queue again", func() bool {
		qs, err := ins.Queues()
		if err != nil {
			t.Fatal(err)
		}
		return slices.Equal(qs, []string{q})
	})
}
