package fair_test

import (
	"slices"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
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
