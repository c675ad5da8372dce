package storage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestInvalidationPastTheDeadlineGoesOnWithoutTheCaller: a status change
// saved while Redis answers nothing (its process stopped) returns by its
// caller's deadline, not after the invalidation's own bound (5 s), with an
// error wrapping ErrInvalidationPending (which wraps
// ErrInvalidationFailed) and context.DeadlineExceeded; the invalidation
// goes on, Wait waits for it, and once Redis answers again it is applied:
// another instance reads the new status.
func TestInvalidationPastTheDeadlineGoesOnWithoutTheCaller(t *testing.T) {
	t.Parallel()
	server := testenv.StartRedis(t, testenv.RedisOptions{})
	env := newCacheEnv(t, server.Addr())
	a := env.cache(t, storage.CacheOptions{LocalTTL: 100 * time.Millisecond})
	b := env.cache(t, storage.CacheOptions{LocalTTL: 100 * time.Millisecond})
	tn := mustCreateTenant(t, t.Context(), a, "pending", tenantctx.StatusActive)
	if got, err := b.TenantByID(t.Context(), tn.ID); err != nil || got.Status != tenantctx.StatusActive {
		t.Fatalf("B reads %s, %v before the change; want active", got.Status, err)
	}
	resume := testenv.StopRedis(t, env.rdb)
	defer resume()

	const deadline = time.Second
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	start := time.Now()
	got, err := a.SetStatus(ctx, tn.ID, tenantctx.StatusSuspended)
	took := time.Since(start)
	t.Logf("SetStatus while Redis answers nothing: after %v: %v", took.Round(10*time.Millisecond), err)
	// A correctness bound (the deadline, with slack), not a performance one.
	if took > deadline+2500*time.Millisecond {
		t.Errorf("SetStatus returned after %v, want by its deadline (%v, plus slack)", took.Round(10*time.Millisecond), deadline)
	}
	for _, want := range []error{storage.ErrInvalidationPending, storage.ErrInvalidationFailed, context.DeadlineExceeded} {
		if !errors.Is(err, want) {
			t.Errorf("SetStatus error %v, want it to wrap %v", err, want)
		}
	}
	if got.Status != tenantctx.StatusSuspended {
		t.Errorf("SetStatus returned status %s, want suspended (saved)", got.Status)
	}

	// The invalidation still runs: Wait does not return while Redis is
	// stopped.
	wctx, wcancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	if err := a.Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait while the invalidation waits for Redis: %v, want context.DeadlineExceeded", err)
	}
	wcancel()

	resume()
	wctx, wcancel = context.WithTimeout(t.Context(), time.Minute)
	defer wcancel()
	if err := a.Wait(wctx); err != nil {
		t.Fatalf("Wait after Redis resumed: %v", err)
	}
	for end := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		got, err := b.TenantByID(t.Context(), tn.ID)
		if err == nil && got.Status == tenantctx.StatusSuspended {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("B reads %s, %v after the invalidation went on; want suspended", got.Status, err)
		}
	}
}
