package worker

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/invoicing/tenantworker/tasks"
)

// TestTaskDurationBucketsCoverTimeouts: tenantworker_task_duration_seconds
// has a finite bucket above every task type's timeout, so that a long
// sweep or migration (up to its timeout: 30 and 10 minutes, and an attempt
// cut off there ends a little after it) is told apart from one of 5
// minutes instead of landing in +Inf, where histogram_quantile reports the
// last finite bound.
func TestTaskDurationBucketsCoverTimeouts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tasks.Types() {
		m.duration.WithLabelValues(p.TypeName()).Observe(0)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tenantworker_task_duration_seconds" {
			continue
		}
		bs := mf.GetMetric()[0].GetHistogram().GetBucket()
		top := bs[len(bs)-1].GetUpperBound()
		for _, p := range tasks.Types() {
			if timeout := p.Spec().Timeout.Seconds(); timeout >= top {
				t.Errorf("%s may run %gs (its timeout) and a little more when cut off there, the largest finite bucket is %gs", p.TypeName(), timeout, top)
			}
		}
		return
	}
	t.Fatal("no tenantworker_task_duration_seconds")
}
