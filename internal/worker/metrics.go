package worker

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tasks"
)

// metricsNamespace prefixes the worker's own metrics. asynq's queue
// metrics keep their "asynq_" names.
const metricsNamespace = "tenantworker"

// Metrics are the worker's Prometheus metrics. No metric has a tenant
// label: the number of tenants is unbounded, the number of series must not
// be. A nil *Metrics is valid and records nothing.
type Metrics struct {
	processed    *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	render       prometheus.Histogram
	pdfRenders   *prometheus.CounterVec
	pdfUnchanged prometheus.Counter
}

// pdfFontPaths are the label values of tenantworker_pdf_renders_total: the
// renderer's font paths (pdf.FontPath).
var pdfFontPaths = []string{"cp1252", "cp1250", "utf8", "utf8-cid"}

// NewMetrics creates the worker's metrics and registers them with reg:
//
//	tenantworker_tasks_processed_total{type,outcome}
//	tenantworker_task_duration_seconds{type}
//	tenantworker_pdf_render_seconds
//	tenantworker_pdf_renders_total{font_path}
//	tenantworker_pdf_unchanged_total
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "tasks_processed_total",
			Help: "Task attempts by type and outcome (ok, error, skip_retry, not_ready, panic, cut_off).",
		}, []string{"type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "task_duration_seconds",
			Help: "Duration of task attempts by type, middleware included.",
			// Past the longest task timeout (a sweep's 30 minutes): an
			// attempt cut off at that deadline ends a little after it and
			// lands in the last bucket, not in +Inf only.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 600, 1800, 2400},
		}, []string{"type"}),
		render: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "pdf_render_seconds",
			Help:    "Time to render one invoice PDF.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		pdfRenders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "pdf_renders_total",
			Help: "Invoice PDFs rendered, by the renderer's font path (cp1252, cp1250, utf8: single-byte fonts subset per document; utf8-cid: fpdf's UTF-8 fonts, several times slower).",
		}, []string{"font_path"}),
		pdfUnchanged: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "pdf_unchanged_total",
			Help: "invoice:pdf tasks that kept the stored document because the invoice had not changed since it was rendered.",
		}),
	}
	for _, c := range []prometheus.Collector{m.processed, m.duration, m.render, m.pdfRenders, m.pdfUnchanged} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register task metrics: %w", err)
		}
	}
	// Known label values start at zero so rates exist before the first task.
	for _, p := range tasks.Types() {
		for _, o := range []string{OutcomeOK, OutcomeError, OutcomeSkipRetry, OutcomeNotReady, OutcomePanic, OutcomeCutOff} {
			m.processed.WithLabelValues(p.TypeName(), o)
		}
	}
	for _, f := range pdfFontPaths {
		m.pdfRenders.WithLabelValues(f)
	}
	return m, nil
}

// metricsKey carries *Metrics in a handler's ctx.
type metricsKey struct{}

// Middleware counts every attempt by type and outcome and observes its
// duration; it also puts m into ctx for ObserveRender. Unknown task types
// are counted under type "unknown" so a hostile type name cannot create
// series.
func (m *Metrics) Middleware() asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		if m == nil {
			return next
		}
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			typ := metricType(envelopeOf(ctx, t))
			start := time.Now()
			outcome := OutcomePanic // unless ProcessTask returns
			defer func() {
				m.duration.WithLabelValues(typ).Observe(time.Since(start).Seconds())
				m.processed.WithLabelValues(typ, outcome).Inc()
			}()
			err := next.ProcessTask(context.WithValue(ctx, metricsKey{}, m), t)
			outcome = attemptOutcome(ctx, err)
			return err
		})
	}
}

// metricType is the type label of a task: its type when registered,
// "unknown" otherwise.
func metricType(env Envelope) string {
	if env.Known {
		return env.Type
	}
	return "unknown"
}

// ObserveRender records the duration of one PDF render in the metrics the
// Metrics middleware put into ctx; without them it does nothing. The
// invoice:pdf handler calls it around pdf rendering.
func ObserveRender(ctx context.Context, d time.Duration) {
	if m, ok := ctx.Value(metricsKey{}).(*Metrics); ok && m != nil {
		m.render.Observe(d.Seconds())
	}
}

// ObservePDF records one invoice:pdf outcome in the metrics the Metrics
// middleware put into ctx: a render by its font path, or, with fontPath
// "", a stored document kept unchanged. Without metrics it does nothing. A
// font path the renderer does not name is counted as "other", so the label
// stays bounded.
func ObservePDF(ctx context.Context, fontPath string) {
	m, ok := ctx.Value(metricsKey{}).(*Metrics)
	if !ok || m == nil {
		return
	}
	if fontPath == "" {
		m.pdfUnchanged.Inc()
		return
	}
	for _, f := range pdfFontPaths {
		if f == fontPath {
			m.pdfRenders.WithLabelValues(f).Inc()
			return
		}
	}
	m.pdfRenders.WithLabelValues("other").Inc()
}

// queueMetricsTimeout bounds how long a scrape waits for asynq's queue
// metrics, as the backlog metrics' look-ups are bounded (fair.Collector).
const queueMetricsTimeout = 2 * time.Second

// RegisterQueueMetrics registers asynq's queue metrics (sizes by state,
// latency, processed and failed totals, memory) read through inspector on
// every scrape, and tenantworker_queue_metrics_skipped_total. They are
// asynq's own (asynq/x/metrics), under its names, except that a look-up
// that fails is counted: a scrape leaves them out, counting it, when Redis
// does not answer them within queueMetricsTimeout (their look-ups take no
// deadline: the client's read timeouts and retries, several seconds), when
// a look-up fails (Redis down: refused at once), and at once while an
// earlier scrape's look-ups still wait. The rest of the scrape is answered
// as usual.
//
// The queues are those of asynq's registry (asynq:queues) and, with rdb,
// those of queues (the worker's layout) that hold tasks: Redis that lost
// its data (restarted without persistence, flushed) lists none of them in
// the registry, and asynq's client registers a queue once per process, so
// the queues' metrics would be missing, while tasks go through them,
// until the processes restart. Such a queue is registered again, as the
// enqueue service's task look-up does (tasks.Enqueuer).
func RegisterQueueMetrics(reg prometheus.Registerer, inspector *asynq.Inspector, rdb redis.UniversalClient, queues []string) error {
	c := &boundedCollector{
		inner:   queueMetrics{inspector: inspector, rdb: rdb, queues: queues}.collect,
		timeout: queueMetricsTimeout,
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "queue_metrics_skipped_total",
			Help: "Scrapes that left out asynq's queue metrics because Redis did not answer them in time or could not be reached (or an earlier scrape's look-ups still waited for it).",
		}),
	}
	if err := reg.Register(c); err != nil {
		return fmt.Errorf("register asynq queue metrics: %w", err)
	}
	return nil
}

// boundedCollector collects inner for up to timeout, and its counter of
// the scrapes it left inner out of (inner failed or was not done in
// time). It is an unchecked collector (it describes nothing): inner's
// descriptions come from collecting it, which would read Redis at
// registration, without a bound.
type boundedCollector struct {
	inner   func() ([]prometheus.Metric, error)
	timeout time.Duration
	skipped prometheus.Counter
	busy    atomic.Bool // an inner collect has not ended
}

// Describe implements prometheus.Collector: nothing (unchecked).
func (c *boundedCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *boundedCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.skipped.Collect(ch)
	if !c.busy.CompareAndSwap(false, true) {
		c.skipped.Inc()
		return
	}
	type result struct {
		metrics []prometheus.Metric
		err     error
	}
	// Buffered so that an inner collect that ends after the deadline
	// does not wait for a reader.
	done := make(chan result, 1)
	go func() {
		var r result
		func() {
			// Not busy before the result is handed over: a scrape right
			// after this one, once it returned, must not find the
			// look-ups still under way and leave them out.
			defer c.busy.Store(false)
			r.metrics, r.err = c.inner()
		}()
		done <- r
	}()
	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			c.skipped.Inc()
			return
		}
		for _, m := range r.metrics {
			ch <- m
		}
	case <-timer.C:
		// Nothing of an unfinished collect: its metrics would be a
		// part of the queues.
		c.skipped.Inc()
	}
}

// The descriptions of asynq's queue metrics, as asynq/x/metrics names
// them.
var (
	asynqTasksQueuedDesc = prometheus.NewDesc("asynq_tasks_enqueued_total",
		"Number of tasks enqueued; broken down by queue and state.", []string{"queue", "state"}, nil)
	asynqQueueSizeDesc = prometheus.NewDesc("asynq_queue_size",
		"Number of tasks in a queue", []string{"queue"}, nil)
	asynqQueueLatencyDesc = prometheus.NewDesc("asynq_queue_latency_seconds",
		"Number of seconds the oldest pending task is waiting in pending state to be processed.", []string{"queue"}, nil)
	asynqQueueMemoryDesc = prometheus.NewDesc("asynq_queue_memory_usage_approx_bytes",
		"Number of memory used by a given queue (approximated number by sampling).", []string{"queue"}, nil)
	asynqTasksProcessedDesc = prometheus.NewDesc("asynq_tasks_processed_total",
		"Number of tasks processed (both succeeded and failed); broken down by queue", []string{"queue"}, nil)
	asynqTasksFailedDesc = prometheus.NewDesc("asynq_tasks_failed_total",
		"Number of tasks failed; broken down by queue", []string{"queue"}, nil)
	asynqQueuePausedDesc = prometheus.NewDesc("asynq_queue_paused_total",
		"Number of queues paused", []string{"queue"}, nil)
)

// queueMetrics reads asynq's queue metrics through an inspector, as
// asynq/x/metrics's collector does, but returns a failed look-up's error
// instead of logging it and collecting nothing; with rdb, it also covers
// the queues of queues that asynq's registry lost (registerLost).
type queueMetrics struct {
	inspector *asynq.Inspector
	rdb       redis.UniversalClient
	queues    []string
}

// collect returns the metrics of every queue asynq knows, or the error of
// the first look-up that failed.
func (q queueMetrics) collect() ([]prometheus.Metric, error) {
	names, err := q.inspector.Queues()
	if err != nil {
		return nil, fmt.Errorf("asynq queue names: %w", err)
	}
	if names, err = q.registerLost(names); err != nil {
		return nil, err
	}
	var out []prometheus.Metric
	for _, name := range names {
		info, err := q.inspector.GetQueueInfo(name)
		if err != nil {
			return nil, fmt.Errorf("asynq queue %s: %w", name, err)
		}
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
		}
		for _, s := range []struct {
			state string
			n     int
		}{{"active", info.Active}, {"pending", info.Pending}, {"scheduled", info.Scheduled}, {"retry", info.Retry},
			{"archived", info.Archived}, {"completed", info.Completed}} {
			gauge(asynqTasksQueuedDesc, float64(s.n), info.Queue, s.state)
		}
		gauge(asynqQueueSizeDesc, float64(info.Size), info.Queue)
		gauge(asynqQueueLatencyDesc, info.Latency.Seconds(), info.Queue)
		gauge(asynqQueueMemoryDesc, float64(info.MemoryUsage), info.Queue)
		out = append(out,
			prometheus.MustNewConstMetric(asynqTasksProcessedDesc, prometheus.CounterValue, float64(info.ProcessedTotal), info.Queue),
			prometheus.MustNewConstMetric(asynqTasksFailedDesc, prometheus.CounterValue, float64(info.FailedTotal), info.Queue))
		paused := 0.0
		if info.Paused {
			paused = 1
		}
		gauge(asynqQueuePausedDesc, paused, info.Queue)
	}
	return out, nil
}

// asynqQueuesKey is asynq's registry of queues, whose queues its
// inspector looks at.
const asynqQueuesKey = "asynq:queues"

// registerLost registers again in asynq's registry each queue of q.queues
// that it does not list (registered) but that holds tasks, and returns
// registered with them.
func (q queueMetrics) registerLost(registered []string) ([]string, error) {
	if q.rdb == nil {
		return registered, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), queueMetricsTimeout)
	defer cancel()
	for _, queue := range q.queues {
		if slices.Contains(registered, queue) {
			continue
		}
		p := "asynq:{" + queue + "}:"
		n, err := q.rdb.Exists(ctx, p+"pending", p+"active", p+"scheduled", p+"retry", p+"archived", p+"completed").Result()
		if err != nil {
			return nil, fmt.Errorf("look at asynq queue %s: %w", queue, err)
		}
		if n == 0 {
			continue
		}
		if err := q.rdb.SAdd(ctx, asynqQueuesKey, queue).Err(); err != nil {
			return nil, fmt.Errorf("register asynq queue %s again: %w", queue, err)
		}
		registered = append(registered, queue)
	}
	return registered, nil
}

// CacheCounters reports the tenant cache's cumulative hits and misses.
type CacheCounters func() (hits, misses uint64)

// RegisterCacheMetrics registers tenantworker_tenant_cache_hits_total and
// tenantworker_tenant_cache_misses_total, read from counters on every
// scrape.
func RegisterCacheMetrics(reg prometheus.Registerer, counters CacheCounters) error {
	hits := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "tenant_cache_hits_total",
		Help: "Tenant look-ups answered by the cache.",
	}, func() float64 { h, _ := counters(); return float64(h) })
	misses := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "tenant_cache_misses_total",
		Help: "Tenant look-ups that went to the catalog.",
	}, func() float64 { _, m := counters(); return float64(m) })
	for _, c := range []prometheus.Collector{hits, misses} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register tenant cache metrics: %w", err)
		}
	}
	return nil
}

// RegisterIdleMetrics registers what an idle worker's waiter (IdleWait)
// did, read from stats on every scrape:
// tenantworker_idle_subscribed (1 while subscribed to the dispatcher's
// announcements, 0 while the worker polls), tenantworker_idle_waits_total
// {ended="woken"|"recheck"} and tenantworker_idle_skipped_dequeues_total
// (queues known to be empty answered without Redis).
func RegisterIdleMetrics(reg prometheus.Registerer, stats func() fair.IdleStats) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "idle_subscribed",
			Help: "1 while the worker is subscribed to the fair dispatcher's announcements of work, 0 while it polls its queues.",
		}, func() float64 {
			if stats().Subscribed {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "idle_waits_total",
			Help:        "Waits of the idle worker for work, by how they ended: woken (an announcement, a forward, a new subscription) or recheck (the wait ran out).",
			ConstLabels: prometheus.Labels{"ended": "woken"},
		}, func() float64 { return float64(stats().Woken) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "idle_waits_total",
			Help:        "Waits of the idle worker for work, by how they ended: woken (an announcement, a forward, a new subscription) or recheck (the wait ran out).",
			ConstLabels: prometheus.Labels{"ended": "recheck"},
		}, func() float64 { return float64(stats().Rechecked) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "idle_skipped_dequeues_total",
			Help: "Dequeue scripts of queues known to be empty that the worker answered itself, without a round trip to Redis.",
		}, func() float64 { return float64(stats().Skipped) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register idle metrics: %w", err)
		}
	}
	return nil
}

// RegisterLaneMetrics registers tenantworker_db_lane_choices_total{choice},
// read from lanes on every scrape: how often a tenant's unit of work got
// its first lane, its second, another one, or waited with all taken
// (schema.LaneChoice). nil lanes (DB_POOL_LANES=1) registers nothing.
func RegisterLaneMetrics(reg prometheus.Registerer, lanes *schema.Lanes) error {
	if lanes == nil {
		return nil
	}
	for _, c := range []schema.LaneChoice{schema.LaneFirst, schema.LaneSecond, schema.LaneOther, schema.LaneFull} {
		m := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "db_lane_choices_total",
			Help:        "Tenants' units of work on the main database by the lane they got: first, second (the first was busy), other (both were), full (all were: it waited on its first).",
			ConstLabels: prometheus.Labels{"choice": c.String()},
		}, func() float64 { return float64(lanes.Chosen(c)) })
		if err := reg.Register(m); err != nil {
			return fmt.Errorf("register lane metrics: %w", err)
		}
	}
	return nil
}
