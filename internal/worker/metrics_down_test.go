package worker_test

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// TestQueueMetricsLeftOutWhileRedisIsDown: with Redis down (its process
// gone: connections refused at once, not a stall), a scrape leaves
// asynq's queue metrics out and counts it in
// tenantworker_queue_metrics_skipped_total, as while Redis stalls; it left
// them out without counting, so the counter an operator watches for
// missing queue metrics stayed flat through the outage. They are back, and
// not counted, once Redis is.
func TestQueueMetricsLeftOutWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := testenv.StartRedis(t, testenv.RedisOptions{AppendOnly: true})
	enq, _ := newTestEnqueuer(t, asynq.RedisClientOpt{Addr: srv.Addr()})
	// An inspector whose dials fail at the first refusal: with go-redis's
	// 5 dials per try, 100 ms apart, a look-up refused failed after about
	// 1.8 s (its command tried 4 times), so close to the scrape's 2 s
	// bound that on a loaded machine the scrape timed out instead (the
	// path of a stall, not of a failure), and its look-up, still retrying
	// once Redis was back, made the next scrape count as skipped too. The
	// command's retries stay: they take a connection the restart broke.
	rdb := srv.NewClient(redis.Options{DialerRetries: 1})
	defer rdb.Close()
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: "tn_a", InvoiceID: 1}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := worker.RegisterQueueMetrics(reg, inspector, nil, nil); err != nil {
		t.Fatal(err)
	}
	// scrape returns whether asynq's metrics are there, and the skipped
	// count.
	scrape := func() (asynqMetrics bool, skipped float64) {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			switch f.GetName() {
			case "asynq_queue_size":
				asynqMetrics = true
			case "tenantworker_queue_metrics_skipped_total":
				skipped = f.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return asynqMetrics, skipped
	}
	if ok, skipped := scrape(); !ok || skipped != 0 {
		t.Fatalf("with Redis up: asynq's metrics %v, skipped %v", ok, skipped)
	}
	srv.Stop(t)
	for i := 1; i <= 2; i++ {
		if ok, skipped := scrape(); ok || skipped != float64(i) {
			t.Errorf("scrape %d with Redis down: asynq's metrics %v, skipped %v; want them left out and %d skipped", i, ok, skipped, i)
		}
	}
	srv.Start(t)
	testenv.WaitFor(t, 30*time.Second, "asynq's queue metrics back with Redis", func() bool { ok, _ := scrape(); return ok })
	if _, skipped := scrape(); skipped != 2 {
		t.Errorf("skipped %v after Redis came back, want 2", skipped)
	}
}
