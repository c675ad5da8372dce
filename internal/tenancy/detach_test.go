package tenancy_test

import (
	"context"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// goneAfterWrite is a catalog whose writes that change access cancel the
// caller's context once they went through: an HTTP client (an operator's
// script with a timeout, a proxy giving up) that disconnected just as its
// change was saved.
type goneAfterWrite struct {
	storage.Catalog
	cancel context.CancelFunc
}

func (c goneAfterWrite) SetStatus(ctx context.Context, id string, st tenantctx.Status) (tenantctx.Tenant, error) {
	t, err := c.Catalog.SetStatus(ctx, id, st)
	c.cancel()
	return t, err
}

func (c goneAfterWrite) SetStatusFrom(ctx context.Context, id string, from, st tenantctx.Status) (tenantctx.Tenant, error) {
	t, err := c.Catalog.SetStatusFrom(ctx, id, from, st)
	c.cancel()
	return t, err
}

func (c goneAfterWrite) RevokeAPIKey(ctx context.Context, id string, keyID int64) (bool, error) {
	revoked, err := c.Catalog.RevokeAPIKey(ctx, id, keyID)
	c.cancel()
	return revoked, err
}

// TestSavedChangeCompletesWhenTheCallerGoesAway: once a key revocation, a
// suspension or a deletion request is saved in the catalog, what completes
// it (its audit entry; for a deletion, the tenant:destroy that erases the
// tenant) is done even though the caller's context ended right after the
// write. Before, the audit entry was lost for good (a second call finds
// nothing to change and records nothing), and a deletion left the tenant
// marked deleting with no destroy queued: its schema and documents stayed.
func TestSavedChangeCompletesWhenTheCallerGoesAway(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "leaver")
	keys, err := b.catalog.ListAPIKeys(b.ctx, tn.ID)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %v, %v", keys, err)
	}
	// call runs fn with a context the catalog cancels after its write.
	call := func(fn func(ctx context.Context, svc *tenancy.Service) error) {
		t.Helper()
		ctx, cancel := context.WithCancel(b.ctx)
		defer cancel()
		svc := tenancy.New(tenancy.Config{Catalog: goneAfterWrite{Catalog: b.catalog, cancel: cancel},
			Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
		if err := fn(ctx, svc); err != nil {
			t.Errorf("with the caller gone after the write: %v", err)
		}
	}
	actions := func() map[string]int {
		n := map[string]int{}
		for _, e := range b.audit(t, tn.ID) {
			n[e.Action]++
		}
		return n
	}

	call(func(ctx context.Context, svc *tenancy.Service) error {
		return svc.RevokeKey(ctx, tn.ID, keys[0].ID, tenancy.ActorAdmin)
	})
	if n := actions()[string(tenancy.ActionKeyRevoked)]; n != 1 {
		t.Errorf("%s entries after the revocation = %d, want 1", tenancy.ActionKeyRevoked, n)
	}

	before := actions()[string(tenancy.ActionStatusChanged)]
	call(func(ctx context.Context, svc *tenancy.Service) error {
		_, err := svc.Suspend(ctx, tn.ID, tenancy.ActorAdmin)
		return err
	})
	if n := actions()[string(tenancy.ActionStatusChanged)]; n != before+1 {
		t.Errorf("%s entries after the suspension = %d, want %d", tenancy.ActionStatusChanged, n, before+1)
	}

	call(func(ctx context.Context, svc *tenancy.Service) error {
		_, err := svc.RequestDeletion(ctx, tn.ID, tenancy.ActorAdmin)
		return err
	})
	if n := actions()[string(tenancy.ActionDeletionRequested)]; n != 1 {
		t.Errorf("%s entries after the deletion request = %d, want 1", tenancy.ActionDeletionRequested, n)
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, tasks.TenantDestroy{TenantID: tn.ID}.Spec().TaskID); err != nil {
		t.Errorf("the tenant is deleting but its destroy is not queued: %v", err)
	}
}
