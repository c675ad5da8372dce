package httpapi

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/invoicing/tenantworker/internal/config"
)

// TestRequestDurationBucketsReachTheDeadlines: a request answered 503 at
// REQUEST_TIMEOUT or ADMIN_REQUEST_TIMEOUT (or one that runs up to the
// server's write timeout, 60 s at least) lands in a bucket of its own, not
// in +Inf only, where a quantile of the route reads as the largest finite
// bound (10 s) whatever the requests took.
func TestRequestDurationBucketsReachTheDeadlines(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m := newMetrics(reg, nil)
	for _, d := range []time.Duration{
		config.DefaultRequestTimeout + 50*time.Millisecond,
		config.DefaultAdminRequestTimeout + 50*time.Millisecond,
		59 * time.Second,
	} {
		m.observe("GET /admin/queues", 503, d)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "enqueue_http_request_duration_seconds" {
			continue
		}
		h := f.GetMetric()[0].GetHistogram()
		var last uint64
		for _, b := range h.GetBucket() {
			last = b.GetCumulativeCount()
		}
		if last != h.GetSampleCount() {
			t.Fatalf("%d of %d requests answered by the server's deadlines fall in +Inf only (largest bucket %vs)",
				h.GetSampleCount()-last, h.GetSampleCount(), h.GetBucket()[len(h.GetBucket())-1].GetUpperBound())
		}
		return
	}
	t.Fatal("no enqueue_http_request_duration_seconds")
}
