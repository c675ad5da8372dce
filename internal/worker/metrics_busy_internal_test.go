package worker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestQueueMetricsScrapeAfterAnEndedOneIsNotSkipped: a scrape that starts
// once the one before it has been answered (its look-ups ended) collects
// asynq's metrics; only a scrape while an earlier one's look-ups still
// wait is left out and counted. The look-ups' goroutine handed its result
// over before marking itself done, so a scrape right after another (two
// Prometheus servers of a pair scraping at once, or a test's next
// Gather) could find it still marked busy and count a skip for a Redis
// that answered every look-up.
func TestQueueMetricsScrapeAfterAnEndedOneIsNotSkipped(t *testing.T) {
	t.Parallel()
	desc := prometheus.NewDesc("asynq_queue_size", "Number of tasks in a queue", []string{"queue"}, nil)
	c := &boundedCollector{
		inner: func() ([]prometheus.Metric, error) {
			return []prometheus.Metric{prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, 1, "default")}, nil
		},
		timeout: time.Minute,
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantworker_queue_metrics_skipped_total", Help: "Skipped scrapes."}),
	}
	for i := range 20000 {
		ch := make(chan prometheus.Metric, 4)
		c.Collect(ch)
		close(ch)
		if n := testutil.ToFloat64(c.skipped); n != 0 {
			t.Fatalf("scrape %d, each after the one before was answered: %v skipped, want 0", i+1, n)
		}
	}
}
