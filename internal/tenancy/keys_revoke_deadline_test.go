package tenancy_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
)

// revokeFrozen is a catalog that stops answering (a paused VM, a stalled
// disk) as RevokeAPIKey runs: the revocation commits, its answer never
// comes (the caller's ctx ends the call, its outcome unknown), and the key
// list waits from then on until thawed is closed or its ctx ends.
type revokeFrozen struct {
	storage.Catalog
	frozen atomic.Bool
	thawed chan struct{}
}

func (c *revokeFrozen) RevokeAPIKey(ctx context.Context, tenantID string, keyID int64) (bool, error) {
	if _, err := c.Catalog.RevokeAPIKey(ctx, tenantID, keyID); err != nil {
		return false, err
	}
	c.frozen.Store(true)
	<-ctx.Done()
	return false, fmt.Errorf("revoke api key %d of tenant %s: %w", keyID, tenantID, ctx.Err())
}

func (c *revokeFrozen) ListAPIKeys(ctx context.Context, tenantID string) ([]storage.APIKey, error) {
	if c.frozen.Load() {
		select {
		case <-c.thawed:
		case <-ctx.Done():
			return nil, fmt.Errorf("list api keys of tenant %s: %w", tenantID, ctx.Err())
		}
	}
	return c.Catalog.ListAPIKeys(ctx, tenantID)
}

// TestRevokeKeyCutAtTheDeadlineAnswersByIt: a key revocation cut by its
// caller's deadline (an admin request's, ADMIN_REQUEST_TIMEOUT) while the
// catalog does not answer has an unknown outcome, and must answer by that
// deadline as every admin route does (README, "Admin deadline"). Its check
// whether the revocation was saved, to record it, waited for the catalog
// on the caller's time, up to 30 s past the deadline (past the server's
// write timeout with the defaults: no answer at all). That check goes on
// without the caller: once the catalog answers, the revocation, saved, is
// recorded once.
func TestRevokeKeyCutAtTheDeadlineAnswersByIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "revokedeadline")
	keys, err := b.catalog.ListAPIKeys(b.ctx, tn.ID)
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys of the new tenant: %v, %v", keys, err)
	}
	k := keys[0]
	frozen := &revokeFrozen{Catalog: b.catalog, thawed: make(chan struct{})}
	defer func() {
		select {
		case <-frozen.thawed:
		default:
			close(frozen.thawed)
		}
	}()
	svc := tenancy.New(tenancy.Config{Catalog: frozen, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})

	const deadline = time.Second
	ctx, cancel := context.WithTimeout(b.ctx, deadline)
	defer cancel()
	start := time.Now()
	err = svc.RevokeKey(ctx, tn.ID, k.ID, tenancy.ActorAdmin)
	took := time.Since(start)
	t.Logf("RevokeKey cut at its deadline: after %v: %v", took.Round(100*time.Millisecond), err)
	if err == nil {
		t.Fatal("RevokeKey cut at its deadline with its outcome unknown: no error")
	}
	if bound := deadline + 3*time.Second; took > bound {
		t.Errorf("RevokeKey cut at its deadline (%v) answered after %v, want by the deadline (%v with slack): it waited for the catalog",
			deadline, took.Round(100*time.Millisecond), bound)
	}

	close(frozen.thawed)
	wctx, wcancel := context.WithTimeout(b.ctx, time.Minute)
	defer wcancel()
	if err := svc.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	var recorded int
	for _, e := range b.audit(t, tn.ID) {
		if e.Action == string(tenancy.ActionKeyRevoked) && containsKeyID(string(e.Detail), k.ID) {
			recorded++
		}
	}
	if recorded != 1 {
		t.Errorf("%d %s entries of the key whose revocation was saved, want 1", recorded, tenancy.ActionKeyRevoked)
	}
}
