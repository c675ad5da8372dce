package fair_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestLateParkDoesNotEndANewRun: a park names the run its worker's attempt
// runs under (ParkRun). A park of an attempt whose lease ran out, arriving
// after the task id ran again under a later run (a retry the gate let
// run, or the id enqueued and admitted again), must leave that run
// admitted and the task unparked: before run tokens it ended the new
// run's admission (its slot freed while it runs) and parked the new run's
// message, which the release would have run a second time. The new run's
// own park still parks it.
func TestLateParkDoesNotEndANewRun(t *testing.T) {
	t.Parallel()
	A := "asynq:{" + q + "}:"
	p := fair.Policy{Weight: 1, MaxRunning: 1}
	for _, tc := range []struct {
		name  string
		again func(t *testing.T, b bundle, tn, id string) string
	}{{
		name: "retried at the gate",
		again: func(t *testing.T, b bundle, tn, id string) string {
			// The first attempt's worker stalls past its lease; asynq's
			// recoverer retries the task, another worker takes the retry.
			ctx := context.Background()
			b.rdb.LRem(ctx, A+"active", 0, id)
			b.rdb.HSet(ctx, A+"t:"+id, "state", "active")
			b.rdb.LPush(ctx, A+"active", id)
			parked, run, err := b.d.GateRun(ctx, q, id, tn, "invoice:pdf")
			if err != nil || parked || run == "" {
				t.Fatalf("GateRun of the retry = %v, %q, %v; want it to run under a run token", parked, run, err)
			}
			return run
		},
	}, {
		name: "enqueued again after the lease",
		again: func(t *testing.T, b bundle, tn, id string) string {
			done(t, b, id) // asynq is done with the first attempt; no report came
			b.clock.Advance(fair.DefaultLease + time.Second)
			if _, err := b.d.Pump(context.Background(), q); err != nil {
				t.Fatal(err)
			}
			if res := enqueue(t, b, tn, p, 0, 1); res[0].Existing {
				t.Fatalf("enqueue of the id again: %+v; want a new run", res[0])
			}
			if got := dequeue(t, b); got != id {
				t.Fatalf("dequeued %q, want the new run of %s", got, id)
			}
			run, _ := runHeaderOf(t, b, id)
			return run
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 1)
			ctx := context.Background()
			tn := "tn_latepark_" + strings.ReplaceAll(tc.name, " ", "_")
			enqueue(t, b, tn, p, 0, 1)
			id := dequeue(t, b)
			first, _ := runHeaderOf(t, b, id)
			second := tc.again(t, b, tn, id)
			if second == "" || second == first || recordedRun(t, b, id) != second {
				t.Fatalf("second run %q (first %q), recorded %q; want a run of its own", second, first, recordedRun(t, b, id))
			}
			if _, err := b.d.Hold(ctx, tn, fair.Suspended, q); err != nil {
				t.Fatal(err)
			}

			// The first attempt's park, late.
			parked, err := b.d.ParkRun(ctx, q, id, tn, "invoice:pdf", first)
			if err != nil || parked {
				t.Fatalf("ParkRun of the first run = %v, %v; want false: a later run of the id is admitted", parked, err)
			}
			if s := stats(t, b, tn); s.Admitted != 1 || s.Parked != 0 || recordedRun(t, b, id) != second {
				t.Fatalf("after the first run's late park: %+v, recorded run %q; want the second run %q admitted, nothing parked", s, recordedRun(t, b, id), second)
			}

			// The second run's own worker parks it.
			parked, err = b.d.ParkRun(ctx, q, id, tn, "invoice:pdf", second)
			if err != nil || !parked {
				t.Fatalf("ParkRun of the second run = %v, %v; want it parked", parked, err)
			}
			if s := stats(t, b, tn); s.Admitted != 0 || s.Parked != 1 {
				t.Fatalf("after the second run's park: %+v; want it parked, nothing admitted", s)
			}
		})
	}
}
