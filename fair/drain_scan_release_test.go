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
					forward(t, raw)
					if id := dequeue(t, b); id != retry {
						t.Errorf("worker took %q, want the retry", id)
						return
					}
					parked, _, err := b.d.GateRun(ctx, q, retry, "acme", "invoice:pdf")
					if err != nil || !parked {
						t.Errorf("gate = %v, %v; want the retry parked at the cap", parked, err)
						return
					}
					if c.requeue {
						raw.LRem(ctx, asynqPrefix+"active", 0, retry)
						raw.LPush(ctx, asynqPrefix+"pending", retry)
						raw.HSet(ctx, asynqPrefix+"t:"+retry, "state", "pending")
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
			rep := fair.Report{Queue: q, TaskID: running, TenantID: "acme", Type: "invoice:pdf", Cost: time.Millisecond}
			if err := b.d.Complete(ctx, q, []fair.Report{rep}); err != nil {
				t.Fatal(err)
			}
			done(t, b, running)
			b.clock.Advance(46 * time.Second)
			if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
				t.Fatal(err)
			}
			if s := stats(t, b, "acme"); s.Waiting+s.Admitted+s.Parked != 0 {
				t.Errorf("after the drain: %d waiting, %d admitted, %d parked; want the discarded retry gone", s.Waiting, s.Admitted, s.Parked)
			}
			if s := asynqState(t, b, retry); s != "gone" {
				t.Errorf("the discarded retry is in asynq (%s)", s)
			}
		})
	}
}
