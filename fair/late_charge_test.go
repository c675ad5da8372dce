package fair_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestLateReportIsChargedOnce: admission charges a run its estimate, and
// its report corrects that by the measured cost, so that the tenant pays
// the run once, its measured cost. A run the lease check ended (asynq no
// longer had the task, no report had come) keeps its estimate charged;
// when its report then comes late, it must charge only the difference,
// not the whole cost on top of the estimate, also when the task id was
// admitted again meanwhile (whose run stays admitted). A second report of
// that run finds nothing left to correct and is charged in full, as any
// report of a run whose estimate is unknown.
func TestLateReportIsChargedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// DefaultCost (5 ms) is the estimate: admitted at weight 4, a task is
	// charged 1250 us of virtual time; 1 ms measured is 250.
	const estimate, measured = 1250.0, 250.0
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	for _, again := range []bool{false, true} {
		name := "late report"
		if again {
			name = "late report after the id was admitted again"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 50)
			const tn = "tn_late_charge"
			p := fair.Policy{Weight: 4}
			enqueue(t, b, tn, p, 0, 1)
			id := dequeue(t, b)
			run, _ := runHeaderOf(t, b, id)
			if v := tenantVT(t, b, tn); !near(v, estimate) {
				t.Fatalf("virtual time after admission %v, want %v", v, estimate)
			}
			// asynq is done with the task, its worker's report does not come
			// in time: the lease check ends the run.
			done(t, b, id)
			b.clock.Advance(fair.DefaultLease + time.Second)
			if _, err := b.d.Pump(ctx, q); err != nil {
				t.Fatal(err)
			}
			if s := stats(t, b, tn); s.Admitted != 0 {
				t.Fatalf("after the lease ran out: %+v; want the run ended", s)
			}
			want := estimate
			if again {
				if res := enqueue(t, b, tn, p, 0, 1); res[0].Existing {
					t.Fatalf("enqueue of the id again: %+v; want a new run", res[0])
				}
				want += estimate
			}
			if v := tenantVT(t, b, tn); !near(v, want) {
				t.Fatalf("virtual time before the late report %v, want %v", v, want)
			}

			late := fair.Report{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: run}
			if err := b.d.Complete(ctx, q, []fair.Report{late}); err != nil {
				t.Fatal(err)
			}
			want += measured - estimate
			if v := tenantVT(t, b, tn); !near(v, want) {
				t.Fatalf("virtual time after the late report %v, want %v: the run's estimate corrected to its measured cost (charged in full on top: %v)", v, want, want+estimate)
			}
			if again {
				if s := stats(t, b, tn); s.Admitted != 1 {
					t.Fatalf("after the late report: %+v; want the new run still admitted", s)
				}
			}

			// The same report again: the estimate was corrected once.
			if err := b.d.Complete(ctx, q, []fair.Report{late}); err != nil {
				t.Fatal(err)
			}
			want += measured
			if v := tenantVT(t, b, tn); !near(v, want) {
				t.Fatalf("virtual time after the report again %v, want %v", v, want)
			}
		})
	}
}
