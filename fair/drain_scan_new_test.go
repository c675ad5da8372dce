package fair_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestDrainKeepsTheRetryOfATaskEnqueuedAfterItBegan: a drain discards the
// tasks that waited when it began and no others. A task the tenant
// enqueues once the drain's backlog steps are done, while it still goes
// through asynq's sets, is admitted, runs and fails: its retry did not
// wait when the drain began, and stays, wherever the scans are when asynq
// moves it into its retry set (or, due, into its pending list).
func TestDrainKeepsTheRetryOfATaskEnqueuedAfterItBegan(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		set     string
		forward bool
	}{
		{"fails before the scans", "scheduled", false},
		{"fails before the scans and comes due", "scheduled", true},
		{"fails before the pending scan and comes due", "pending", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			hook := &scanHook{}
			b, raw := setupScanHook(t, hook)
			enqueue(t, b, "acme", fair.Policy{Weight: 1}, 0, 1)
			waited := dequeue(t, b)
			if waited == "" {
				t.Fatal("the tenant's first task was not admitted")
			}
			// The first task fails before the drain: its retry waits.
			rep := fair.Report{Queue: q, TaskID: waited, TenantID: "acme", Type: "invoice:pdf", Cost: time.Millisecond}
			if err := b.d.Complete(ctx, q, []fair.Report{rep}); err != nil {
				t.Fatal(err)
			}
			if err := raw.Eval(ctx, asynqRetry, []string{asynqPrefix}, waited, 1).Err(); err != nil {
				t.Fatal(err)
			}
			var later string
			var once sync.Once
			hook.at = func(phase, set string, _ bool) {
				if phase != "before" || set != c.set {
					return
				}
				once.Do(func() {
					// The backlog steps are over: the tenant's new task is
					// admitted, runs and fails.
					other := otherProcess(t, b)
					enqueueThrough(t, other, "acme", 1, 1)
					later = dequeue(t, b)
					if later == "" {
						t.Error("the task enqueued after the drain began was not admitted")
						return
					}
					rep := fair.Report{Queue: q, TaskID: later, TenantID: "acme", Type: "invoice:pdf", Cost: time.Millisecond}
					if err := other.Complete(ctx, q, []fair.Report{rep}); err != nil {
						t.Error(err)
					}
					if err := raw.Eval(ctx, asynqRetry, []string{asynqPrefix}, later, 1).Err(); err != nil {
						t.Error(err)
					}
					if c.forward {
						forward(t, raw)
					}
				})
			}
			n, err := b.d.Drain(ctx, "acme", q)
			if err != nil {
				t.Fatal(err)
			}
			if n.Total() != 1 || n.Retrying != 1 {
				t.Errorf("Drain = %+v; want the one retry that waited when it began", n)
			}
			if s := asynqState(t, b, waited); s != "gone" {
				t.Errorf("the retry that waited when the drain began is left in asynq (%s)", s)
			}
			if later == "" {
				return
			}
			want := "retry"
			if c.forward {
				want = "pending"
			}
			if s := asynqState(t, b, later); s != want {
				t.Errorf("the retry of the task enqueued after the drain began: asynq holds it as %q, want %q", s, want)
			}
		})
	}
}
