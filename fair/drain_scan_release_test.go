package fair_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestDrainDiscardsARetryParkedWhileItScansWhateverTheHeartbeatDoes: a
// retry that waited in asynq's retry set when the drain began, which a
// worker takes (forwarded into the pending list) while the drain goes
// through asynq's sets, is parked by the gate at its tenant's running cap:
// the drain's end step discards it and counts it. A worker's heartbeat
// before that end step must not release it back into the backlog, from
// where it ran once the tenant had room, after the drain said it
// discarded what waited: when the scans took longer than the hand-back
// time (45 s) after the park, or at once when a shutdown put the task back
// into asynq's pending list after the park (asynq did not let it go).
func TestDrainDiscardsARetryParkedWhileItScansWhateverTheHeartbeatDoes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		requeue bool
	}{{"scans longer than the hand-back time", false}, {"put back by a shutdown", true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			hook := &scanHook{}
			b, raw := setupScanHook(t, hook)
			const retry = "invoice:pdf:acme:r1"
			pol := fair.Policy{Weight: 1, MaxRunning: 1}
			// The tenant's one slot is taken by a task that runs through
			// the drain.
			enqueue(t, b, "acme", pol, 0, 1)
			running := dequeue(t, b)
			if running == "" {
				t.Fatal("the tenant's task was not admitted")
			}
			waitIn(t, raw, "retry", retry)
			var once sync.Once
			hook.at = func(phase, set string, _ bool) {
				if phase != "before" || set != "retry" {
					return
				}
				once.Do(func() {
					parkForwardedRetry(t, b, raw, retry)
					if t.Failed() {
						return
					}
					if c.requeue {
						requeueAsAShutdown(ctx, raw, retry)
					} else {
						done(t, b, retry) // the worker's hand-back
						b.clock.Advance(46 * time.Second)
					}
					// A worker's heartbeat while the drain still scans; a
					// shutdown put the retry back after this pending scan.
					if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
						t.Error(err)
					}
				})
			}
			n, err := b.d.Drain(ctx, "acme", q)
			if err != nil {
				t.Fatal(err)
			}
			if n.Total() != 1 {
				t.Errorf("Drain = %+v; want the retry that waited when it began discarded and counted", n)
			}
			// The running task ends: the tenant has room again.
			finishRunning(t, b, running)
			wantDiscardedRetryGone(t, b, retry)
		})
	}
}
