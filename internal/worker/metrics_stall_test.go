package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// TestQueueMetricsLeftOutWhileRedisStalls: asynq's queue metrics are read
// from Redis at every scrape by asynq's collector, whose look-ups take no
// deadline: while Redis did not answer, every scrape of /metrics waited
// for the client's read timeouts and retries, the worker's own metrics
// with it, and a Prometheus scrape_timeout shorter than that lost the
// whole scrape. The scrape now leaves asynq's metrics out after
// queueMetricsTimeout, counting it in
// tenantworker_queue_metrics_skipped_total, and has them again once Redis
// answers.
func TestQueueMetricsLeftOutWhileRedisStalls(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	opt := asynq.RedisClientOpt{Addr: srv.Addr()}
	enq, inspector := newTestEnqueuer(t, opt)
	if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: "tn_a", InvoiceID: 1}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := worker.RegisterQueueMetrics(reg, inspector, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := worker.RegisterCacheMetrics(reg, func() (uint64, uint64) { return 7, 3 }); err != nil {
		t.Fatal(err)
	}
	// gather returns each family's value of its first series by name.
	gather := func() map[string]float64 {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range families {
			m := f.GetMetric()[0]
			out[f.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return out
	}
	names := func() map[string]bool {
		t.Helper()
		out := map[string]bool{}
		for name := range gather() {
			out[name] = true
		}
		return out
	}
	if got := names(); !got["asynq_tasks_enqueued_total"] || !got["tenantworker_tenant_cache_hits_total"] {
		t.Fatalf("metrics with Redis up: %v", got)
	}

	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tenantworker_queue_metrics_skipped_total Scrapes that left out asynq's queue metrics because Redis did not answer them in time or could not be reached (or an earlier scrape's look-ups still waited for it).
# TYPE tenantworker_queue_metrics_skipped_total counter
tenantworker_queue_metrics_skipped_total 0
`), "tenantworker_queue_metrics_skipped_total"); err != nil {
		t.Error(err)
	}

	rdb := srv.NewClient(redis.Options{})
	defer rdb.Close()
	resume := testenv.StopRedis(t, rdb)
	got := gather()
	if _, ok := got["asynq_tasks_enqueued_total"]; ok || got["tenantworker_tenant_cache_hits_total"] != 7 ||
		got["tenantworker_queue_metrics_skipped_total"] != 1 {
		t.Fatalf("metrics while Redis stalls: %v; want the cache's and one skipped scrape, without asynq's", got)
	}
	resume()
	deadline := time.Now().Add(30 * time.Second)
	for !names()["asynq_tasks_enqueued_total"] {
		if time.Now().After(deadline) {
			t.Fatal("asynq's queue metrics did not come back after Redis did")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
