package worker_test

import (
	"testing"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// TestQueueMetricsAfterRedisLostItsData: Redis that comes back without its
// data (restarted without persistence, flushed) no longer lists the queues
// in asynq's registry (asynq:queues), and asynq's client registers a queue
// once per process, so the tasks enqueued since are in the queue while the
// registry stays empty until the processes restart. asynq's queue metrics
// come from that registry: they vanished, every queue's, with tasks
// pending, and without counting a skipped scrape. The worker's scrape
// covers the queues of its layout too, so a queue of it that holds tasks
// is in the metrics again.
func TestQueueMetricsAfterRedisLostItsData(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := testenv.StartRedis(t, testenv.RedisOptions{}) // no persistence: a restart loses the data
	enq, inspector := newTestEnqueuer(t, asynq.RedisClientOpt{Addr: srv.Addr()})
	rdb := srv.NewClient(redis.Options{})
	defer rdb.Close()
	reg := prometheus.NewPedanticRegistry()
	if err := worker.RegisterQueueMetrics(reg, inspector, rdb, tasks.Layout{}.Queues()); err != nil {
		t.Fatal(err)
	}
	// pending returns asynq_queue_size{queue="default"}, and whether it is
	// there.
	pending := func() (float64, bool) {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != "asynq_queue_size" {
				continue
			}
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == tasks.QueueDefault {
					return m.GetGauge().GetValue(), true
				}
			}
		}
		return 0, false
	}
	if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: "tn_a", InvoiceID: 1}); err != nil {
		t.Fatal(err)
	}
	if n, ok := pending(); !ok || n != 1 {
		t.Fatalf("before the restart: asynq_queue_size{queue=default} %v (there: %v), want 1", n, ok)
	}
	srv.Restart(t)
	if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: "tn_a", InvoiceID: 2}); err != nil {
		t.Fatal(err)
	}
	if n, ok := pending(); !ok || n != 1 {
		t.Errorf("after Redis lost its data and a task was enqueued: asynq_queue_size{queue=default} %v (there: %v), want 1", n, ok)
	}
}
