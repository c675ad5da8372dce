package tenancy_test

import (
	"context"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// goneAfterTimeZone is a catalog that cancels the caller's context once a
// time zone change went through: a client that disconnected just as its
// change was saved.
type goneAfterTimeZone struct {
	storage.Catalog
	cancel context.CancelFunc
}

func (c goneAfterTimeZone) SetTimeZone(ctx context.Context, id, zone string) (tenantctx.Tenant, error) {
	t, err := c.Catalog.SetTimeZone(ctx, id, zone)
	c.cancel()
	return t, err
}

// TestSavedTimeZoneIsAuditedWhenTheCallerGoesAway: a time zone change
// saved in the catalog is recorded (tenant.time_zone_changed) even though
// the caller's context ended right after the write, as every other saved
// change is. Before, the entry was written on the caller's context and
// lost: the tenant's zone changed without any record of it.
func TestSavedTimeZoneIsAuditedWhenTheCallerGoesAway(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "zoneleaver")
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	svc := tenancy.New(tenancy.Config{Catalog: goneAfterTimeZone{Catalog: b.catalog, cancel: cancel},
		Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	got, err := svc.SetTimeZone(ctx, tn.ID, "Europe/Berlin", tenancy.ActorAdmin)
	if err != nil || got.TimeZone != "Europe/Berlin" {
		t.Fatalf("SetTimeZone with the caller gone after the write = %+v, %v", got, err)
	}
	n := 0
	for _, e := range b.audit(t, tn.ID) {
		if e.Action == string(tenancy.ActionTimeZoneChanged) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%s entries after the change = %d, want 1", tenancy.ActionTimeZoneChanged, n)
	}
}
