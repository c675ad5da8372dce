package fair_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestAttemptCutByLostLeaseIsChargedOnce: an attempt whose worker lost its
// lease is cut off under its handler and reported as such (Report.CutOff:
// charged its measured cost, its run not ended). asynq's recoverer then
// retries the task, so the run never gets another report: the lease check
// ends it, and the retry runs under a run of its own (the gate's). The
// tenant must pay the cut run once, its measured cost ("a tenant pays for
// each run once ... corrected to the measured time by the run's report");
// it paid the admission's estimate and the measured cost on top.
func TestAttemptCutByLostLeaseIsChargedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// DefaultCost (5 ms) is the estimate: at weight 4 an admission charges
	// 1250 us of virtual time; 1 ms measured is 250.
	const estimate, measured = 1250.0, 250.0
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	b := setup(t, 50)
	const tn = "tn_cut_lease"
	enqueue(t, b, tn, fair.Policy{Weight: 4}, 0, 1)
	id := dequeue(t, b)
	run, _ := runHeaderOf(t, b, id)
	if v := tenantVT(t, b, tn); !near(v, estimate) {
		t.Fatalf("virtual time after admission %v, want %v", v, estimate)
	}
	// The worker's lease runs out: asynq cancels the handler, which is
	// reported cut off; asynq's recoverer retries the task.
	cut := fair.Report{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: run, CutOff: true}
	if err := b.d.Complete(ctx, q, []fair.Report{cut}); err != nil {
		t.Fatal(err)
	}
	toRetry(t, b, id)
	b.clock.Advance(fair.DefaultLease + time.Second)
	if _, err := b.d.Pump(ctx, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Admitted != 0 {
		t.Fatalf("after the lease ran out: %+v; want the run ended", s)
	}
	// The retry runs through the gate under a run of its own.
	parked, retryRun, err := b.d.GateRun(ctx, q, id, tn, "invoice:pdf")
	if err != nil || parked {
		t.Fatalf("gate of the retry: parked %v, %v", parked, err)
	}
	retry := fair.Report{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: retryRun}
	if err := b.d.Complete(ctx, q, []fair.Report{retry}); err != nil {
		t.Fatal(err)
	}
	if v, want := tenantVT(t, b, tn), 2*measured; !near(v, want) {
		t.Fatalf("virtual time %v, want %v (the cut attempt and the retry, each its measured cost); the cut run's estimate stayed charged on top: %v", v, want, want+estimate)
	}
}
