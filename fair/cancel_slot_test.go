package fair_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestAttemptCancelledFromTheDashboardFreesItsSlot: an operator cancels a
// running task from asynq's dashboard (the inspector's CancelProcessing):
// asynq cancels the handler's ctx and fails the attempt itself, into its
// retry set (or its archive on the last attempt), and the handler's report
// comes cut off (Report.CutOff), as for a shutdown or a lost lease. The run
// is over: the tenant's slot must come back when the handler returns, not
// when the run's lease runs out (30 s) while a tenant at its running cap
// waits for nothing. asynq's own write and the report race: the slot comes
// back at the report when asynq's write came first, else at the next
// heartbeat after it (the report brings the run's lease check forward).
// The tenant pays the cut attempt's measured time, not the estimate too,
// and asynq's copy of the message names the ended run no more.
func TestAttemptCancelledFromTheDashboardFreesItsSlot(t *testing.T) {
	t.Parallel()
	for _, reportFirst := range []bool{false, true} {
		name := "asynq failed the attempt before the report"
		if reportFirst {
			name = "the report before asynq failed the attempt"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			// At weight 4 the default estimate (5 ms) charges 1250 us of
			// virtual time, 1 ms measured 250.
			const estimate, measured = 1250.0, 250.0
			b := setup(t, 50)
			const tn = "tn_cancelled"
			enqueue(t, b, tn, fair.Policy{Weight: 4, MaxRunning: 1}, 0, 2)
			id := dequeue(t, b)
			run, _ := runHeaderOf(t, b, id)
			if n := pendingLen(t, b); n != 0 {
				t.Fatalf("%d pending with the tenant's one slot running; want 0", n)
			}
			cut := fair.Report{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: run, CutOff: true}
			if !reportFirst {
				toRetry(t, b, id)
			}
			if err := b.d.Complete(ctx, q, []fair.Report{cut}); err != nil {
				t.Fatal(err)
			}
			if reportFirst {
				toRetry(t, b, id)
				b.clock.Advance(2 * time.Second)
				if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			if s := stats(t, b, tn); s.Admitted != 1 || s.Waiting != 0 || pendingLen(t, b) != 1 {
				t.Fatalf("after the cancelled attempt: %d admitted, %d waiting, %d pending; want its slot back and the tenant's next task admitted", s.Admitted, s.Waiting, pendingLen(t, b))
			}
			// Run again from the dashboard (archived on its last attempt), it
			// asks the gate: asynq's message names the ended run no more.
			if r, _ := runHeaderOf(t, b, id); r != "" {
				t.Errorf("asynq's message of the cancelled task still names its ended run %q", r)
			}
			// The cancelled attempt's measured time and the next task's estimate.
			if v, want := tenantVT(t, b, tn), measured+estimate; math.Abs(v-want) > 1e-6 {
				t.Fatalf("virtual time %v, want %v", v, want)
			}
		})
	}
}
