package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tasks"
)

func TestMetricsMiddleware(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m, err := worker.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	results := []error{nil, nil, worker.Permanentf("gone"), errors.New("db down"), nil}
	i := 0
	h := m.Middleware()(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		worker.ObserveRender(ctx, 20*time.Millisecond)
		err := results[i]
		i++
		return err
	}))
	for range results[:4] {
		_ = h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeInvoicePDF, nil))
	}
	_ = h.ProcessTask(context.Background(), asynq.NewTask("evil:"+strings.Repeat("x", 100), nil))

	for outcome, want := range map[string]float64{worker.OutcomeOK: 2, worker.OutcomeSkipRetry: 1, worker.OutcomeError: 1, worker.OutcomeNotReady: 0} {
		if got := m.Processed(tasks.TypeInvoicePDF, outcome); got != want {
			t.Errorf("processed{invoice:pdf,%s} = %v, want %v", outcome, got, want)
		}
	}
	if got := m.Processed("unknown", worker.OutcomeOK); got != 1 {
		t.Errorf("processed{unknown,ok} = %v, want 1", got)
	}
	if n := m.RenderSeries(); n != 1 {
		t.Errorf("render histogram series %d", n)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "tenant_id" || l.GetName() == "tenant" {
					t.Errorf("%s has a tenant label", f.GetName())
				}
				if strings.HasPrefix(l.GetValue(), "evil:") {
					t.Errorf("%s has a series for a hostile type name", f.GetName())
				}
			}
		}
		if f.GetName() == "tenantworker_pdf_render_seconds" && f.GetMetric()[0].GetHistogram().GetSampleCount() != 5 {
			t.Errorf("render observations %d, want 5", f.GetMetric()[0].GetHistogram().GetSampleCount())
		}
	}
	var nilMetrics *worker.Metrics
	next := asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })
	if err := nilMetrics.Middleware()(next).ProcessTask(context.Background(), asynq.NewTask("x", nil)); err != nil {
		t.Fatal(err)
	}
	worker.ObserveRender(context.Background(), time.Second) // no metrics in ctx: no-op
}

func TestQueueAndCacheMetrics(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	redis := newRedis(t)
	enq, inspector := newTestEnqueuer(t, redis)
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
	want := `
# HELP tenantworker_tenant_cache_hits_total Tenant look-ups answered by the cache.
# TYPE tenantworker_tenant_cache_hits_total counter
tenantworker_tenant_cache_hits_total 7
# HELP tenantworker_tenant_cache_misses_total Tenant look-ups that went to the catalog.
# TYPE tenantworker_tenant_cache_misses_total counter
tenantworker_tenant_cache_misses_total 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tenantworker_tenant_cache_hits_total", "tenantworker_tenant_cache_misses_total"); err != nil {
		t.Error(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() != "asynq_tasks_enqueued_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["queue"] == tasks.QueueDefault && labels["state"] == "pending" && m.GetGauge().GetValue() == 1 {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("asynq_tasks_enqueued_total{queue=default,state=pending} != 1")
	}
}

// TestLaneMetrics: tenantworker_db_lane_choices_total counts the lanes'
// choices by name; without lanes nothing is registered. (The lanes connect
// lazily: choosing one needs no server.)
func TestLaneMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := worker.RegisterLaneMetrics(reg, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Fatalf("without lanes: %d metrics, %v", n, err)
	}
	lanes, err := schema.NewLanes(t.Context(), "postgres://nobody@127.0.0.1:1/none", 2, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer lanes.Close()
	if err := worker.RegisterLaneMetrics(reg, lanes); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		lanes.For("tenant_acme")
	}
	want := `
# HELP tenantworker_db_lane_choices_total Tenants' units of work on the main database by the lane they got: first, second (the first was busy), other (both were), full (all were: it waited on its first).
# TYPE tenantworker_db_lane_choices_total counter
tenantworker_db_lane_choices_total{choice="first"} 3
tenantworker_db_lane_choices_total{choice="full"} 0
tenantworker_db_lane_choices_total{choice="other"} 0
tenantworker_db_lane_choices_total{choice="second"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tenantworker_db_lane_choices_total"); err != nil {
		t.Error(err)
	}
}

// TestIdleMetrics: the idle waiter's state and counts, read on every
// scrape.
func TestIdleMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	stats := fair.IdleStats{Subscribed: true, Woken: 7, Rechecked: 2, Skipped: 40}
	if err := worker.RegisterIdleMetrics(reg, func() fair.IdleStats { return stats }); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP tenantworker_idle_skipped_dequeues_total Dequeue scripts of queues known to be empty that the worker answered itself, without a round trip to Redis.
# TYPE tenantworker_idle_skipped_dequeues_total counter
tenantworker_idle_skipped_dequeues_total 40
# HELP tenantworker_idle_subscribed 1 while the worker is subscribed to the fair dispatcher's announcements of work, 0 while it polls its queues.
# TYPE tenantworker_idle_subscribed gauge
tenantworker_idle_subscribed 1
# HELP tenantworker_idle_waits_total Waits of the idle worker for work, by how they ended: woken (an announcement, a forward, a new subscription) or recheck (the wait ran out).
# TYPE tenantworker_idle_waits_total counter
tenantworker_idle_waits_total{ended="recheck"} 2
tenantworker_idle_waits_total{ended="woken"} 7
`
	names := []string{"tenantworker_idle_skipped_dequeues_total", "tenantworker_idle_subscribed", "tenantworker_idle_waits_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	stats.Subscribed = false
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.Replace(want, "\ntenantworker_idle_subscribed 1\n", "\ntenantworker_idle_subscribed 0\n", 1)), names...); err != nil {
		t.Errorf("after the subscription was lost: %v", err)
	}
}
