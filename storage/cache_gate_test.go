package storage_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestCacheLoadGate: a look-up whose ctx has a load gate
// (storage.WithLoadGate) calls it only when neither layer answers: its
// error is the look-up's and the backend is not asked (no miss counted);
// a gate that lets it pass, or an answer from the local layer or from
// Redis (another instance's fill), never calls it or reaches the gate.
func TestCacheLoadGate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newCacheEnv(t, testenv.Redis(t))
	c := e.cache(t, storage.CacheOptions{})
	tn := mustCreateTenant(t, ctx, e.backend, "gated", tenantctx.StatusActive)
	down := errors.New("main is down")
	var calls atomic.Int64
	closed := storage.WithLoadGate(ctx, func(context.Context) error { calls.Add(1); return down })

	if _, err := c.TenantByID(closed, tn.ID); !errors.Is(err, down) || calls.Load() != 1 || c.Stats().Misses != 0 {
		t.Fatalf("miss behind a closed gate: %v, %d gate calls, %d misses; want the gate's error, 1 call, no backend query",
			err, calls.Load(), c.Stats().Misses)
	}
	open := storage.WithLoadGate(ctx, func(context.Context) error { calls.Add(1); return nil })
	if got, err := c.TenantByID(open, tn.ID); err != nil || got.ID != tn.ID || calls.Load() != 2 || c.Stats().Misses != 1 {
		t.Fatalf("miss behind an open gate: %v, %d gate calls, %d misses; want the tenant from the backend", err, calls.Load(), c.Stats().Misses)
	}
	if _, err := c.TenantByID(closed, tn.ID); err != nil || calls.Load() != 2 {
		t.Fatalf("local hit behind a closed gate: %v, %d gate calls; want the tenant, the gate not asked", err, calls.Load())
	}
	other := e.cache(t, storage.CacheOptions{}) // another process: its local layer empty, Redis filled
	if _, err := other.TenantByID(closed, tn.ID); err != nil || calls.Load() != 2 || other.Stats().RedisHits != 1 {
		t.Fatalf("Redis hit behind a closed gate: %v, %d gate calls, %d Redis hits; want the tenant from Redis, the gate not asked",
			err, calls.Load(), other.Stats().RedisHits)
	}
}
