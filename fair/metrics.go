package fair

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultTopK is how many tenants Collector names per queue.
const DefaultTopK = 10

// otherTenants is the tenant label of everything past the top K.
const otherTenants = "other"

// Collector exports the backlogs as Prometheus metrics with bounded
// cardinality: per queue, the K tenants with the most waiting tasks get a
// series each and every other tenant is summed under tenant="other", so
// 10,000 tenants make K+1 series, not 10,000. It reads Redis on every
// scrape (one pipeline per queue).
//
//	tenantworker_fair_waiting_tasks{queue,tenant}
//	tenantworker_fair_waiting_total{queue}
type Collector struct {
	d       *Dispatcher
	queues  []string
	k       int
	logger  *slog.Logger
	waiting *prometheus.Desc
	total   *prometheus.Desc
	busy    atomic.Bool // the look-ups of a scrape have not ended
}

// NewCollector returns a Collector of queues naming the top k tenants (0
// means DefaultTopK). A nil logger means slog.Default().
func (d *Dispatcher) NewCollector(queues []string, k int, logger *slog.Logger) *Collector {
	if k <= 0 {
		k = DefaultTopK
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Collector{
		d: d, queues: queues, k: k, logger: logger,
		waiting: prometheus.NewDesc("tenantworker_fair_waiting_tasks",
			"Tasks waiting in tenants' backlogs (not yet admitted to asynq): the top tenants by backlog, the rest as tenant=\"other\".",
			[]string{"queue", "tenant"}, nil),
		total: prometheus.NewDesc("tenantworker_fair_waiting_total",
			"Tasks waiting in all tenants' backlogs of a queue.", []string{"queue"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.waiting
	ch <- c.total
}

// collectTimeout bounds a scrape's look-ups of the backlogs; the scrape
// waits for them a little longer (collectWait), so that look-ups their
// context ends are reported as they failed.
const (
	collectTimeout = 2 * time.Second
	collectWait    = collectTimeout + 250*time.Millisecond
)

// Collect implements prometheus.Collector. A queue whose look-up fails
// is left out of the scrape; the scrape logs one warning for all of them
// (how many, the first and its error), not one per queue: with queue
// shards a Redis that does not answer fails every queue at every scrape.
// The look-ups run on a context of collectTimeout, and the scrape waits
// for them no longer than collectWait: go-redis bounds the HELLO of a
// connection it opens by its read timeout alone, not by the context, so a
// stalled Redis would hold the scrape (the process's other metrics with
// it) for that timeout. A scrape that comes while the look-ups of an
// earlier one still wait leaves the backlog metrics out at once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if !c.busy.CompareAndSwap(false, true) {
		c.logger.Warn("fair: collect backlog metrics: the look-ups of an earlier scrape still wait for Redis; left out")
		return
	}
	done := make(chan []prometheus.Metric, 1)
	go func() {
		defer c.busy.Store(false)
		done <- c.collect()
	}()
	timer := time.NewTimer(collectWait)
	defer timer.Stop()
	select {
	case ms := <-done:
		for _, m := range ms {
			ch <- m
		}
	case <-timer.C:
		c.logger.Warn("fair: collect backlog metrics: Redis did not answer in time; left out", slog.Duration("waited", collectWait))
	}
}

// collect looks up every queue's backlogs and returns their metrics.
func (c *Collector) collect() []prometheus.Metric {
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	var out []prometheus.Metric
	failed, firstQueue, firstErr := 0, "", error(nil)
	for _, q := range c.queues {
		top, total, err := c.d.Top(ctx, q, c.k)
		if err != nil {
			if failed == 0 {
				firstQueue, firstErr = q, err
			}
			failed++
			continue
		}
		named := 0
		for _, t := range top {
			named += t.Waiting
			out = append(out, prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(t.Waiting), q, t.TenantID))
		}
		out = append(out,
			prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(max(total-named, 0)), q, otherTenants),
			prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(total), q))
	}
	if failed > 0 {
		c.logger.Warn("fair: collect backlog metrics", slog.Int("queues_failed", failed), slog.Int("queues", len(c.queues)),
			slog.String("queue", firstQueue), slog.String("error", firstErr.Error()))
	}
	return out
}

// WaitHistogram returns a histogram of how long tasks waited in their
// tenant's backlog before admission, by queue, and the Config.OnAdmit
// function that feeds it.
//
//	tenantworker_fair_admission_wait_seconds{queue}
func WaitHistogram() (*prometheus.HistogramVec, func(queue string, waited []time.Duration)) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tenantworker_fair_admission_wait_seconds",
		Help:    "Time tasks waited in their tenant's backlog before the dispatcher admitted them to asynq.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
	}, []string{"queue"})
	return h, func(queue string, waited []time.Duration) {
		o := h.WithLabelValues(queue)
		for _, w := range waited {
			o.Observe(w.Seconds())
		}
	}
}
