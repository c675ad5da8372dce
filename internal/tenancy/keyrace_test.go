package tenancy_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// racyCatalog runs hook once, right after a TenantByID returned its answer:
// a concurrent admin call landing between a check and the write after it.
type racyCatalog struct {
	storage.Catalog
	mu   sync.Mutex
	hook func()
}

func (c *racyCatalog) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	tn, err := c.Catalog.TenantByID(ctx, id)
	c.mu.Lock()
	h := c.hook
	c.hook = nil
	c.mu.Unlock()
	if h != nil {
		h()
	}
	return tn, err
}

// TestKeyIssuedWhileDeletionIsRequested: a deletion requested between
// IssueKey's status check and its insert gets the refusal the check would
// have given, and the catalog makes no key: no key of a tenant being
// deleted is handed out, nor left for its deletion to find.
func TestKeyIssuedWhileDeletionIsRequested(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "keyrace")
	before, err := b.catalog.ListAPIKeys(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	rc := &racyCatalog{Catalog: b.catalog}
	svc := tenancy.New(tenancy.Config{Catalog: rc, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	var key string
	rc.hook = func() {
		if _, err := b.svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
			t.Error(err)
		}
	}
	key, _, err = svc.IssueKey(b.ctx, tn.ID, tenancy.ActorAdmin)
	if !errors.Is(err, tenancy.ErrRefused) {
		t.Fatalf("IssueKey racing a deletion request = %q, %v; want ErrRefused", key, err)
	}
	keys, err := b.catalog.ListAPIKeys(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(before) {
		t.Fatalf("%d keys after the refused issue, %d before; want none made", len(keys), len(before))
	}
}
