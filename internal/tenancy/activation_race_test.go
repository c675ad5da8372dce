package tenancy_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// afterActivation is a catalog that runs a hook once, right after a
// status change to active is saved: another operator's call landing
// between a migration's activation and its audit entry.
type afterActivation struct {
	storage.Catalog
	mu   sync.Mutex
	hook func()
}

func (c *afterActivation) SetStatusFrom(ctx context.Context, id string, from, to tenantctx.Status) (tenantctx.Tenant, error) {
	t, err := c.Catalog.SetStatusFrom(ctx, id, from, to)
	c.mu.Lock()
	h := c.hook
	if to == tenantctx.StatusActive && err == nil {
		c.hook = nil
	} else {
		h = nil
	}
	c.mu.Unlock()
	if h != nil {
		h()
	}
	return t, err
}

// TestActivationRecordedWhenSuspendedRightAway: a tenant suspended by an
// operator right after its migration activated it, before the migration
// recorded the activation, keeps both entries: its activation is not
// dropped because a later status change was recorded first.
func TestActivationRecordedWhenSuspendedRightAway(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ac := &afterActivation{Catalog: b.catalog}
	svc := tenancy.New(tenancy.Config{Catalog: ac, Enqueuer: b.enqueuer, Documents: b.docs, DocumentDirs: []string{invoice.DocumentDir}, SchemaPool: b.pool})
	p, err := svc.Provision(b.ctx, tenancy.NewTenant{Slug: "suspendedatonce"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	ac.hook = func() {
		if _, err := b.svc.Suspend(b.ctx, p.Tenant.ID, tenancy.ActorAdmin); err != nil {
			t.Error(err)
		}
	}
	if res, err := svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker); err != nil || !res.Activated {
		t.Fatalf("Migrate = %+v, %v; want it activated", res, err)
	}
	var got []string
	for _, e := range b.audit(t, p.Tenant.ID) {
		if e.Action == string(tenancy.ActionStatusChanged) {
			got = append(got, strings.ReplaceAll(string(e.Detail), " ", ""))
		}
	}
	var activated, suspended bool
	for _, d := range got {
		activated = activated || (strings.Contains(d, `"from":"provisioning"`) && strings.Contains(d, `"to":"active"`))
		suspended = suspended || (strings.Contains(d, `"from":"active"`) && strings.Contains(d, `"to":"suspended"`))
	}
	if !activated || !suspended {
		t.Fatalf("%s entries %q: want the activation and the suspension", tenancy.ActionStatusChanged, got)
	}
}
