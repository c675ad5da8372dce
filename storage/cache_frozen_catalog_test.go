package storage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

// frozenCatalog is a catalog whose server stops answering (a paused VM, a
// stalled disk) until thawed is closed: a write commits, then its answer
// never comes, so the caller's ctx ends it with its outcome unknown; a
// read waits for the thaw or its ctx.
type frozenCatalog struct {
	*memstore.Catalog
	thawed chan struct{}
}

func (c frozenCatalog) SetStatus(ctx context.Context, id string, status tenantctx.Status) (tenantctx.Tenant, error) {
	if _, err := c.Catalog.SetStatus(ctx, id, status); err != nil {
		return tenantctx.Tenant{}, err
	}
	<-ctx.Done()
	return tenantctx.Tenant{}, fmt.Errorf("set status of tenant %s: %w", id, ctx.Err())
}

func (c frozenCatalog) SetLimits(ctx context.Context, id, plan string, l tenantctx.Limits) (tenantctx.Tenant, error) {
	if _, err := c.Catalog.SetLimits(ctx, id, plan, l); err != nil {
		return tenantctx.Tenant{}, err
	}
	<-ctx.Done()
	return tenantctx.Tenant{}, fmt.Errorf("set limits of tenant %s: %w", id, ctx.Err())
}

func (c frozenCatalog) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	select {
	case <-c.thawed:
	case <-ctx.Done():
		return tenantctx.Tenant{}, fmt.Errorf("tenant %s: %w", id, ctx.Err())
	}
	return c.Catalog.TenantByID(ctx, id)
}

// TestWriteOfUnknownOutcomeAnswersByTheDeadlineWhileTheCatalogIsFrozen: a
// status change (or new limits) cut by its caller's deadline while the
// catalog does not answer has an unknown outcome, so the cache invalidates
// the tenant all the same, also under its slug, which it must read from
// the catalog. That read must not hold the caller past its deadline (an
// admin request's, which must answer then): it ran on the caller's ctx
// without its deadline, and the call returned only once the catalog
// answered again. Once it does, within the invalidation's bound, the slug
// is invalidated too: another instance reads the change by slug.
func TestWriteOfUnknownOutcomeAnswersByTheDeadlineWhileTheCatalogIsFrozen(t *testing.T) {
	t.Parallel()
	env := newCacheEnv(t, testenv.Redis(t))
	other := env.cache(t, storage.CacheOptions{LocalTTL: 50 * time.Millisecond})
	writes := []struct {
		name  string
		write func(ctx context.Context, c *storage.Cache, id string) error
		saved func(tenantctx.Tenant) bool
	}{
		{"suspend", func(ctx context.Context, c *storage.Cache, id string) error {
			_, err := c.SetStatus(ctx, id, tenantctx.StatusSuspended)
			return err
		}, func(got tenantctx.Tenant) bool { return got.Status == tenantctx.StatusSuspended }},
		{"limits", func(ctx context.Context, c *storage.Cache, id string) error {
			_, err := c.SetLimits(ctx, id, "", tenantctx.Limits{MaxRunning: 3})
			return err
		}, func(got tenantctx.Tenant) bool { return got.Limits.MaxRunning == 3 }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			thawed := make(chan struct{})
			writer := storage.NewCache(frozenCatalog{Catalog: env.backend, thawed: thawed}, env.rdb, storage.CacheOptions{KeyPrefix: env.prefix})
			t.Cleanup(func() { _ = writer.Close() })
			tn := mustCreateTenant(t, t.Context(), env.backend, "frozen-"+w.name, tenantctx.StatusActive)
			// Cached by slug in Redis (and in the other instance) before.
			if got, err := other.TenantBySlug(t.Context(), tn.Slug); err != nil || w.saved(got) {
				t.Fatalf("warm-up reads %+v, %v", got, err)
			}

			const deadline = 500 * time.Millisecond
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- w.write(ctx, writer, tn.ID) }()
			var err error
			select {
			case err = <-done:
				t.Logf("with the catalog frozen: after %v: %v", time.Since(start).Round(10*time.Millisecond), err)
				close(thawed)
			case <-time.After(deadline + 15*time.Second):
				t.Errorf("with the catalog frozen: no answer %v after its deadline (%v); want one by then",
					(time.Since(start) - deadline).Round(time.Second), deadline)
				close(thawed)
				err = <-done
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("with the catalog frozen: %v, want context.DeadlineExceeded (outcome unknown)", err)
			}
			wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
			defer wcancel()
			if err := writer.Wait(wctx); err != nil {
				t.Fatalf("Wait once the catalog answers: %v", err)
			}
			eventually(t, propagation, "another instance reads the change by slug", func() bool {
				got, err := other.TenantBySlug(t.Context(), tn.Slug)
				return err == nil && w.saved(got)
			})
		})
	}
}
