package httpapi

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics counts requests by route pattern and status. There is no tenant
// label: tenants are unbounded, and a label per tenant would grow the
// series without limit.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// lateEnqueues is the part of tasks.Enqueuer the metrics read.
type lateEnqueues interface {
	EndedLate() (applied, failed uint64)
}

func newMetrics(reg prometheus.Registerer, enq lateEnqueues) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "enqueue",
			Name:      "http_requests_total",
			Help:      "HTTP requests by route pattern and status code.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "enqueue",
			Name:      "http_request_duration_seconds",
			Help:      "HTTP request duration by route pattern.",
			// Up to the server's write timeout (60 s at least), so that an
			// answer at REQUEST_TIMEOUT (10 s) or ADMIN_REQUEST_TIMEOUT (30
			// s) lands in a bucket of its own, not in +Inf only.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30, 45, 60},
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	if enq != nil {
		for _, outcome := range []string{"applied", "failed"} {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace:   "enqueue",
				Name:        "enqueues_after_deadline_total",
				Help:        "Enqueues that ended after their request had answered (503 at REQUEST_TIMEOUT while Redis did not answer), by outcome; a retry of an applied one finds its task.",
				ConstLabels: prometheus.Labels{"outcome": outcome},
			}, func() float64 {
				applied, failed := enq.EndedLate()
				if outcome == "applied" {
					return float64(applied)
				}
				return float64(failed)
			}))
		}
	}
	return m
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, statusText(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// metricsHandler serves g in the Prometheus exposition format.
func metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
