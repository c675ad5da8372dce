package tenancy_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// erasedDuringWalk is a catalog whose tenant victim is erased (its row
// deleted, as tenant:destroy does) right after the first page of tenants
// was read: a deletion that completes while MigrateAll walks the catalog.
type erasedDuringWalk struct {
	*storage.Postgres
	victim string
	once   sync.Once
	err    error
}

func (c *erasedDuringWalk) ListTenants(ctx context.Context, opts storage.ListOptions) ([]tenantctx.Tenant, error) {
	page, err := c.Postgres.ListTenants(ctx, opts)
	c.once.Do(func() { c.err = c.Postgres.DeleteTenant(ctx, c.victim) })
	return page, err
}

// TestMigrateAllSkipsTenantErasedDuringTheWalk: a tenant erased after
// MigrateAll read it from the catalog and before its tenant:migrate was
// enqueued is skipped; every other tenant, also those after it in id
// order, still gets its migration.
func TestMigrateAllSkipsTenantErasedDuringTheWalk(t *testing.T) {
	t.Parallel()
	pool, catalog, docs := catalogOn(t)
	var ids []string
	for _, slug := range []string{"walk-a", "walk-b", "walk-c", "walk-d"} {
		tn, err := tenantctx.New(slug, slug, "free")
		if err != nil {
			t.Fatal(err)
		}
		tn.Status = tenantctx.StatusActive
		tn, err = catalog.CreateTenant(t.Context(), tn)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tn.ID)
	}
	slices.Sort(ids)
	victim := ids[0] // the first in id order: every other tenant comes after it
	walk := &erasedDuringWalk{Postgres: catalog, victim: victim}
	d, enq, inspector := fairOn(t, catalog)
	svc := tenancy.New(tenancy.Config{Catalog: walk, Enqueuer: enq, Documents: docs, SchemaPool: pool,
		Dispatcher: d, Plans: fair.DefaultPlans()})

	all, err := svc.MigrateAll(t.Context())
	if walk.err != nil {
		t.Fatalf("erase %s: %v", victim, walk.err)
	}
	if err != nil {
		t.Fatalf("MigrateAll with a tenant erased during the walk: %v (%d enqueued)", err, len(all))
	}
	var got []string
	for _, m := range all {
		got = append(got, m.TenantID)
	}
	slices.Sort(got)
	if want := ids[1:]; !slices.Equal(got, want) {
		t.Fatalf("MigrateAll enqueued for %v, want %v", got, want)
	}
	for _, id := range got {
		if _, err := enq.TenantTask(t.Context(), id, "tenant:migrate:"+id); err != nil {
			t.Errorf("tenant:migrate of %s: %v", id, err)
		}
	}
	if _, err := inspector.GetTaskInfo(tasks.QueueCritical, "tenant:migrate:"+victim); err == nil {
		t.Errorf("a tenant:migrate was enqueued for the erased tenant %s", victim)
	}
}
