package worker_test

import (
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestParkSentAgainAfterTheResumeRunsTheTaskOnce: a worker parks the
// task of a tenant suspended after the task was admitted (or, a retry, let
// run at the gate); the park script ran (the task parked with its
// message), its reply was lost, the tenant was resumed, and go-redis sent
// the park again, which answered that the tenant is not held. The worker
// does not run that attempt (it ends as a not-ready wait: asynq's retry
// set; a last attempt kept there by KeepLastAttempt), and the parked
// record brings the task back from there once: it runs once, its last
// attempt neither archived nor run twice, and nothing of it is left
// parked, waiting or admitted.
func TestParkSentAgainAfterTheResumeRunsTheTaskOnce(t *testing.T) {
	t.Parallel()
	for _, last := range []bool{false, true} {
		name := map[bool]string{false: "first attempt", true: "last attempt"}[last]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			w := newFairWorker(t)
			tn := addTenant(t, w.catalog, "park-resent", tenantctx.StatusSuspended)
			p := tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}
			id := p.Spec().TaskID
			// The park of the task sent twice (testenv.SendTwice): fair's
			// park script's ARGV ends with the task id, tenant, type and
			// run token.
			hook := &testenv.SendTwice{Once: true,
				Match: func(args []any) bool { n := len(args); return n >= 5 && args[n-4] == id },
				// Suspended after the task was admitted and taken: held now.
				Before: func() {
					if _, err := w.d.Hold(ctx, tn.ID, fair.Suspended, tasks.WorkQueues...); err != nil {
						t.Error(err)
					}
				},
				// Resumed between the park and its resend.
				Between: func() {
					if _, err := w.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
						t.Error(err)
					}
					if _, err := w.d.Release(ctx, tn.ID, fair.Suspended, tasks.WorkQueues...); err != nil {
						t.Error(err)
					}
				},
			}
			w.rdb.AddHook(hook)
			if last {
				injectRetry(t, w.rdb, tn.ID, 1, lastRetry)
			} else if _, err := w.enq.Enqueue(ctx, p); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, time.Minute, "the park sent twice", hook.Fired)
			testenv.WaitFor(t, time.Minute, "the task runs after the resume", func() bool { return w.runs.Load() >= 1 })
			testenv.WaitFor(t, time.Minute, "nothing left of the tenant in the dispatcher", func() bool {
				s := w.stats(t, tn.ID)
				return s.Parked == 0 && s.Waiting == 0 && s.Admitted == 0
			})
			// Past the hand-back time and a few heartbeats: a parked record
			// left behind would have brought the task back by now.
			time.Sleep(3 * fairLease)
			if n := w.runs.Load(); n != 1 {
				t.Fatalf("handler ran %d times, want 1", n)
			}
			if n := w.retried.Load(); last && n != lastRetry {
				t.Fatalf("ran with retry count %d, want %d", n, lastRetry)
			}
			if st := state(t, w.rdb, id); st == "archived" {
				t.Fatal("the task was archived")
			}
			if s := w.stats(t, tn.ID); s.Parked != 0 || s.Waiting != 0 || s.Admitted != 0 {
				t.Fatalf("stats after the run: %+v; want nothing left", s)
			}
		})
	}
}
