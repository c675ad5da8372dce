package fair_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestDrainKilledDuringItsScansLeavesNothingForEver: a drain whose caller
// is killed while it goes through asynq's sets and pending list (between
// two scan calls) leaves its scan mark (the tenant's 'scan' field, which
// has admission note the tenant's admitted tasks for it) and its list of
// scanning drains behind. Nothing a drain writes may stay in Redis for
// ever: once its scans stopped being made, a heartbeat removes them; the
// field had no expiry and no step but the drain's own last one removed it.
func TestDrainKilledDuringItsScansLeavesNothingForEver(t *testing.T) {
	t.Parallel()
	hook := &scanHook{}
	b, raw := setupScanHook(t, hook)
	ctx := context.Background()
	waitIn(t, raw, "retry", "invoice:pdf:acme:r1")
	enqueue(t, b, "acme", fair.Policy{Weight: 1}, 0, 1)
	killed, kill := context.WithCancel(ctx)
	hook.at = func(phase, set string, _ bool) {
		if phase == "before" && set == "retry" {
			kill() // the drain's process dies before this call reaches Redis
		}
	}
	if _, err := b.d.Drain(killed, "acme", q); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain = %v; want it cut off at its retry scan", err)
	}
	hook.mu.Lock()
	hook.at = nil
	hook.mu.Unlock()
	if n, err := raw.HExists(ctx, "fair:{"+q+"}:t:acme", "scan").Result(); err != nil || !n {
		t.Fatalf("scan mark after the killed drain: %v, %v; want it there (the test kills the drain too late otherwise)", n, err)
	}
	// Long after, a worker's heartbeat.
	b.clock.Advance(2 * time.Hour)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n, err := raw.HExists(ctx, "fair:{"+q+"}:t:acme", "scan").Result(); err != nil || n {
		t.Errorf("the killed drain's scan mark is still in the tenant's hash (%v, %v); nothing removes it", n, err)
	}
	if n, err := raw.Exists(ctx, "fair:{"+q+"}:drs:acme").Result(); err != nil || n != 0 {
		t.Errorf("the killed drain's list of scanning drains is still there (%d, %v)", n, err)
	}
	if n, err := raw.SIsMember(ctx, "fair:{"+q+"}:draining", "acme").Result(); err != nil || n {
		t.Errorf("the tenant is still listed as drained (%v, %v)", n, err)
	}
	// The tenant's work goes on as before: its task enqueued before the
	// drain was discarded by the drain's first step, a new one is admitted.
	enqueue(t, b, "acme", fair.Policy{Weight: 1}, 1, 1)
	if s := stats(t, b, "acme"); s.Admitted != 1 {
		t.Errorf("after the killed drain, a new task: %+v; want it admitted", s)
	}
}
