package devstack

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// provisionSetup is a memory catalog, an enqueuer on miniredis and the
// tenant lifecycle on them.
type provisionSetup struct {
	catalog   *memstore.Catalog
	svc       *tenancy.Service
	inspector *asynq.Inspector
}

func newProvisionSetup(t *testing.T) provisionSetup {
	t.Helper()
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rc.Close() })
	inspector := asynq.NewInspectorFromRedisClient(rc)
	catalog := memstore.New()
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rc), inspector, nil)
	return provisionSetup{
		catalog:   catalog,
		svc:       tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq}),
		inspector: inspector,
	}
}

// pendingMigrations returns the tenant ids of the pending tenant:migrate tasks.
func (s provisionSetup) pendingMigrations(t *testing.T) []string {
	t.Helper()
	infos, err := s.inspector.ListPendingTasks(tasks.QueueCritical)
	if err != nil && !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("list pending: %v", err)
	}
	var ids []string
	for _, info := range infos {
		if info.Type == tasks.TypeTenantMigrate {
			var p struct {
				TenantID string `json:"tenant_id"`
			}
			if err := json.Unmarshal(info.Payload, &p); err != nil {
				t.Fatalf("decode payload %s: %v", info.Payload, err)
			}
			ids = append(ids, p.TenantID)
		}
	}
	return ids
}

func TestProvisionDemoNewThenReused(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := newProvisionSetup(t)
	d := demoTenants[0]

	first, err := provisionDemo(ctx, s.svc, s.catalog, d)
	if err != nil {
		t.Fatalf("first provision: %v", err)
	}
	if first.reused || first.tenant.Slug != d.slug || first.tenant.Status != tenantctx.StatusProvisioning || first.apiKey == "" {
		t.Fatalf("first provision = %+v", first)
	}
	if first.tenant.TimeZone != d.timeZone || d.timeZone == "" {
		t.Fatalf("first provision in time zone %q, want the demo's %q", first.tenant.TimeZone, d.timeZone)
	}
	if got := s.pendingMigrations(t); len(got) != 1 || got[0] != first.tenant.ID {
		t.Fatalf("pending migrations after provisioning: %v, want [%s]", got, first.tenant.ID)
	}

	// Second run while the first migration is still pending: reused, new
	// key, still one pending migration.
	second, err := provisionDemo(ctx, s.svc, s.catalog, d)
	if err != nil {
		t.Fatalf("second provision: %v", err)
	}
	if !second.reused || second.tenant.ID != first.tenant.ID || second.apiKey == "" || second.apiKey == first.apiKey {
		t.Fatalf("second provision = %+v (first %+v)", second, first)
	}
	if got := s.pendingMigrations(t); len(got) != 1 {
		t.Fatalf("pending migrations after reuse: %v, want one", got)
	}
	// An active tenant reused gets a migration too (a no-op unless
	// migrations were added since it was created).
	if _, err := s.inspector.DeleteAllPendingTasks(tasks.QueueCritical); err != nil {
		t.Fatal(err)
	}
	if _, err := s.catalog.SetStatus(ctx, first.tenant.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	third, err := provisionDemo(ctx, s.svc, s.catalog, d)
	if err != nil || !third.reused {
		t.Fatalf("third provision = %+v, %v", third, err)
	}
	if got := s.pendingMigrations(t); len(got) != 1 || got[0] != first.tenant.ID {
		t.Fatalf("pending migrations after reusing an active tenant: %v, want [%s]", got, first.tenant.ID)
	}

	for _, key := range []string{first.apiKey, second.apiKey, third.apiKey} {
		if id, err := s.catalog.TenantForAPIKey(ctx, key); err != nil || id != first.tenant.ID {
			t.Fatalf("key %q: tenant %q, %v", key, id, err)
		}
	}
	audit, err := s.catalog.AuditEntries(ctx, first.tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range audit {
		actions = append(actions, e.Action+"/"+e.Actor)
	}
	if strings.Join(actions, ",") != "tenant.provisioned/devstack,tenant.key_issued/devstack,tenant.key_issued/devstack" {
		t.Fatalf("audit = %v", actions)
	}
}

func TestProvisionDemoRefusesTenantBeingDeleted(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := newProvisionSetup(t)
	d := demoTenants[1]
	p, err := provisionDemo(ctx, s.svc, s.catalog, d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.catalog.SetStatus(ctx, p.tenant.ID, tenantctx.StatusDeleting); err != nil {
		t.Fatal(err)
	}
	_, err = provisionDemo(ctx, s.svc, s.catalog, d)
	if err == nil || !strings.Contains(err.Error(), "being deleted") {
		t.Fatalf("provision of a tenant being deleted: %v", err)
	}
}

func TestWaitActive(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := newProvisionSetup(t)
	newTenant := func(slug string) tenantctx.Tenant {
		tn, err := tenantctx.New(slug, slug, "free")
		if err != nil {
			t.Fatal(err)
		}
		tn, err = s.catalog.CreateTenant(ctx, tn)
		if err != nil {
			t.Fatal(err)
		}
		return tn
	}

	t.Run("becomes active", func(t *testing.T) {
		t.Parallel()
		tn := newTenant("wait-active")
		// The tenant turns active once waitActive has seen it
		// provisioning, not after a fixed sleep that a slow machine may
		// stretch past the timeout.
		store := &firstLookup{TenantStore: s.catalog, seen: make(chan struct{})}
		activated := make(chan error, 1)
		go func() {
			<-store.seen
			_, err := s.catalog.SetStatus(context.Background(), tn.ID, tenantctx.StatusActive)
			activated <- err
		}()
		got, err := waitActive(ctx, store, tn.ID, 30*time.Second)
		if aerr := <-activated; aerr != nil {
			t.Fatalf("SetStatus active: %v", aerr)
		}
		if err != nil || got.Status != tenantctx.StatusActive {
			t.Fatalf("waitActive = %+v, %v", got, err)
		}
	})
	t.Run("times out while provisioning", func(t *testing.T) {
		t.Parallel()
		tn := newTenant("wait-stuck")
		done := make(chan error, 1)
		go func() {
			_, err := waitActive(ctx, s.catalog, tn.ID, 400*time.Millisecond)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "still provisioning") || !strings.Contains(err.Error(), "tenant:migrate") {
				t.Fatalf("waitActive on a stuck tenant: %v", err)
			}
		case <-time.After(time.Minute): // a bound for the failure message, not a measurement
			t.Fatal("waitActive with a timeout of 400ms still waiting a minute later")
		}
	})
	t.Run("suspended fails at once", func(t *testing.T) {
		t.Parallel()
		tn := newTenant("wait-suspended")
		if _, err := s.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
			t.Fatal(err)
		}
		if _, err := s.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusSuspended); err != nil {
			t.Fatal(err)
		}
		_, err := waitActive(ctx, s.catalog, tn.ID, 10*time.Second)
		if err == nil || !strings.Contains(err.Error(), "suspended") {
			t.Fatalf("waitActive on a suspended tenant: %v", err)
		}
	})
	t.Run("unknown tenant fails", func(t *testing.T) {
		t.Parallel()
		_, err := waitActive(ctx, s.catalog, "no-such-id", 10*time.Second)
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("waitActive on an unknown tenant: %v", err)
		}
	})
}

// firstLookup is a TenantStore that closes seen once its first TenantByID
// has returned.
type firstLookup struct {
	storage.TenantStore
	seen chan struct{}
	once sync.Once
}

// TenantByID is the store's, and then closes seen (once).
func (f *firstLookup) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	t, err := f.TenantStore.TenantByID(ctx, id)
	f.once.Do(func() { close(f.seen) })
	return t, err
}

// TestProvisionDemoResumesSuspendedTenant: a second run on one
// DATABASE_URL after a demo tenant was suspended (POST
// /admin/tenants/{id}/suspend during the first) must not refuse to start
// with advice to call an admin route that only that start would serve.
func TestProvisionDemoResumesSuspendedTenant(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := newProvisionSetup(t)
	d := demoTenants[0]
	p, err := provisionDemo(ctx, s.svc, s.catalog, d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.catalog.SetStatus(ctx, p.tenant.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	if _, err := s.svc.Suspend(ctx, p.tenant.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	again, err := provisionDemo(ctx, s.svc, s.catalog, d)
	if err != nil || !again.reused {
		t.Fatalf("provision of a suspended demo tenant = %+v, %v", again, err)
	}
	got, err := waitActive(ctx, s.catalog, p.tenant.ID, 10*time.Second)
	if err != nil || got.Status != tenantctx.StatusActive {
		t.Fatalf("waitActive after reusing a suspended demo tenant = %+v, %v", got, err)
	}
}

// TestProvisionDemoResumesPausedQueue: a second run on one DATABASE_URL
// after a demo tenant's queue was paused (POST
// /admin/tenants/{id}/queue/pause during the first) must not leave the
// pause in place. The catalog records it, this run's fair dispatch puts
// it back, and it would hold every task of the tenant: the banner's
// render would stay pending for good, and the tenant:migrate that the
// reuse enqueues too.
func TestProvisionDemoResumesPausedQueue(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rc.Close() })
	inspector := asynq.NewInspectorFromRedisClient(rc)
	catalog := memstore.New()
	d := fair.New(rc, fair.Config{MinPending: 1})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rc), inspector, nil,
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}))
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Dispatcher: d, Plans: fair.DefaultPlans()})
	demo := demoTenants[0]

	p, err := provisionDemo(ctx, svc, catalog, demo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.SetStatus(ctx, p.tenant.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PauseQueue(ctx, p.tenant.ID, "admin"); err != nil {
		t.Fatal(err)
	}

	again, err := provisionDemo(ctx, svc, catalog, demo)
	if err != nil || !again.reused {
		t.Fatalf("provision of a demo tenant whose queue is paused = %+v, %v", again, err)
	}
	q, err := svc.Queue(ctx, p.tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	paused, err := catalog.PausedTenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if q.Paused || len(paused) != 0 {
		t.Fatalf("after reusing the demo tenant its queue is paused %v, paused in the catalog: %v; want neither (its tasks would never run)", q.Paused, paused)
	}
	audit, err := catalog.AuditEntries(ctx, p.tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range audit {
		actions = append(actions, e.Action+"/"+e.Actor)
	}
	if !strings.Contains(strings.Join(actions, ","), string(tenancy.ActionQueueResumed)+"/"+auditActor) {
		t.Fatalf("audit = %v, want the resume recorded as %s", actions, auditActor)
	}
}
