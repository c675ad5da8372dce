package fair_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// TestDrainDiscardsARetryParkedWhileItScans: a retry of the tenant that
// waited in asynq's retry set when the drain began, which asynq's
// forwarder moves into the pending list and a worker takes while the
// drain goes through asynq's sets, is parked by the gate (the tenant is
// held, or at its running cap): it has not started, and the dispatcher
// keeps it. The drain discards and counts it, as it does a task parked
// before it began; it went unseen (neither in asynq's sets nor in the
// pending list when the scans looked), and came back into the backlog
// and ran once the tenant was released or had room. One that a shutdown
// puts back into the pending list after it was parked is discarded there
// by the scan, once: its parked record goes with it.
func TestDrainDiscardsARetryParkedWhileItScans(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		held    bool
		requeue bool
	}{{"held", true, false}, {"at its running cap", false, false}, {"held, put back by a shutdown", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			hook := &scanHook{}
			b, raw := setupScanHook(t, hook)
			const retry = "invoice:pdf:acme:r1"
			pol := fair.Policy{Weight: 1, MaxRunning: 1}
			var running string
			if c.held {
				if _, err := b.d.Hold(ctx, "acme", fair.Paused, q); err != nil {
					t.Fatal(err)
				}
			} else {
				// The tenant's one slot is taken by a task that runs
				// through the drain (its retry, if any, would stay).
				enqueue(t, b, "acme", pol, 0, 1)
				if running = dequeue(t, b); running == "" {
					t.Fatal("the tenant's task was not admitted")
				}
			}
			waitIn(t, raw, "retry", retry)
			var once sync.Once
			hook.at = func(phase, set string, _ bool) {
				if phase != "before" || set != "retry" {
					return
				}
				once.Do(func() {
					// asynq's forwarder moves the due retry into the
					// pending list, a worker takes it and asks the gate,
					// which parks it; the worker hands it back to asynq.
					parkForwardedRetry(t, b, raw, retry)
					if !c.requeue {
						done(t, b, retry)
						return
					}
					// A shutdown that stopped waiting for the worker puts
					// the task back into the pending list instead.
					requeueAsAShutdown(ctx, raw, retry)
				})
			}
			n, err := b.d.Drain(ctx, "acme", q)
			if err != nil {
				t.Fatal(err)
			}
			if n.Total() != 1 || (!c.requeue && n.Parked != 1) {
				t.Errorf("Drain = %+v; want the retry that waited when it began discarded once, as a parked task unless asynq had it back", n)
			}
			// Released (or given room) and past the hand-back time: it
			// must not come back.
			if c.held {
				if _, err := b.d.Release(ctx, "acme", fair.Paused, q); err != nil {
					t.Fatal(err)
				}
			} else {
				finishRunning(t, b, running)
			}
			wantDiscardedRetryGone(t, b, retry)
		})
	}
}

// parkForwardedRetry is a worker taking retry, which asynq's forwarder
// moved into the pending list, and asking the gate, which parks it (the
// tenant held or at its running cap). The worker's hand-back is the
// caller's.
func parkForwardedRetry(t *testing.T, b bundle, raw *redis.Client, retry string) {
	t.Helper()
	forward(t, raw)
	if id := dequeue(t, b); id != retry {
		t.Errorf("worker took %q, want the retry", id)
		return
	}
	parked, _, err := b.d.GateRun(context.Background(), q, retry, "acme", "invoice:pdf")
	if err != nil || !parked {
		t.Errorf("gate = %v, %v; want the retry parked", parked, err)
	}
}

// requeueAsAShutdown puts active task id back into asynq's pending list,
// as a shutdown that stopped waiting for its worker does.
func requeueAsAShutdown(ctx context.Context, raw *redis.Client, id string) {
	raw.LRem(ctx, asynqPrefix+"active", 0, id)
	raw.LPush(ctx, asynqPrefix+"pending", id)
	raw.HSet(ctx, asynqPrefix+"t:"+id, "state", "pending")
}

// finishRunning reports acme's running task done: the tenant has room
// again.
func finishRunning(t *testing.T, b bundle, running string) {
	t.Helper()
	rep := fair.Report{Queue: q, TaskID: running, TenantID: "acme", Type: "invoice:pdf", Cost: time.Millisecond}
	if err := b.d.Complete(context.Background(), q, []fair.Report{rep}); err != nil {
		t.Fatal(err)
	}
	done(t, b, running)
}

// wantDiscardedRetryGone checks, past the hand-back time and after a
// heartbeat, that the retry a drain discarded came back nowhere: not in
// acme's backlog, admitted or parked, not in asynq.
func wantDiscardedRetryGone(t *testing.T, b bundle, retry string) {
	t.Helper()
	b.clock.Advance(46 * time.Second)
	if err := b.d.Heartbeat(context.Background(), q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, "acme"); s.Waiting+s.Admitted+s.Parked != 0 {
		t.Errorf("after the drain: %d waiting, %d admitted, %d parked; want the discarded retry gone", s.Waiting, s.Admitted, s.Parked)
	}
	if s := asynqState(t, b, retry); s != "gone" {
		t.Errorf("the discarded retry is in asynq (%s)", s)
	}
}
