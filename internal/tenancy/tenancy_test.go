package tenancy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

func TestMain(m *testing.M) { os.Exit(testenv.MainLeakCheck(m)) }

// bundle is a Service on a fresh database and Redis.
type bundle struct {
	ctx       context.Context
	catalog   *storage.Postgres
	docs      *storage.FS
	inspector *asynq.Inspector
	enqueuer  *tasks.Enqueuer
	svc       *tenancy.Service
	pool      *pgxpool.Pool
}

// catalogOn opens a pool on a fresh test database, migrates the catalog
// there and makes a document store in a temporary directory.
func catalogOn(t *testing.T) (*pgxpool.Pool, *storage.Postgres, *storage.FS) {
	t.Helper()
	return catalogAt(t, testenv.Postgres(t), 4)
}

// catalogAt is catalogOn on the database at url, with a pool of conns
// connections.
func catalogAt(t *testing.T, url string, conns int32) (*pgxpool.Pool, *storage.Postgres, *storage.FS) {
	t.Helper()
	pool, err := schema.NewPool(t.Context(), url, schema.PoolOptions{MaxConns: conns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := storage.MigrateCatalog(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	docs, err := storage.NewFS(filepath.Join(t.TempDir(), "documents"))
	if err != nil {
		t.Fatal(err)
	}
	return pool, storage.NewPostgres(pool), docs
}

// setDatabaseDefault sets the run-time parameter param of pool's database
// to value, as an operator's ALTER DATABASE ... SET does: the sessions
// opened from then on begin with it, those already open keep what they
// had.
func setDatabaseDefault(t *testing.T, ctx context.Context, pool *pgxpool.Pool, param, value string) {
	t.Helper()
	var stmt string
	if err := pool.QueryRow(ctx, "SELECT pg_catalog.format('ALTER DATABASE %I SET %I = %L', pg_catalog.current_database(), $1::text, $2::text)",
		param, value).Scan(&stmt); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, stmt); err != nil {
		t.Fatal(err)
	}
}

func setup(t *testing.T) *bundle {
	t.Helper()
	pool, catalog, docs := catalogOn(t)
	redis := asynq.RedisClientOpt{Addr: testenv.Redis(t)}
	client, inspector := asynq.NewClient(redis), asynq.NewInspector(redis)
	t.Cleanup(func() { _ = client.Close(); _ = inspector.Close() })
	enq := tasks.NewEnqueuer(client, inspector, nil)
	return &bundle{ctx: t.Context(), catalog: catalog, docs: docs, inspector: inspector, pool: pool, enqueuer: enq,
		svc: tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, DocumentDirs: []string{invoice.DocumentDir}, SchemaPool: pool})}
}

// active provisions slug and migrates it, as tenant:migrate would.
func (b *bundle) active(t *testing.T, slug string) tenantctx.Tenant {
	t.Helper()
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: slug}, "test")
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker)
	if err != nil || !res.Activated || !res.Created {
		t.Fatalf("Migrate of a provisioning tenant = %+v, %v; want it created and activated", res, err)
	}
	tn, err := b.catalog.TenantByID(b.ctx, p.Tenant.ID)
	if err != nil || tn.Status != tenantctx.StatusActive {
		t.Fatalf("after Migrate: %+v, %v", tn, err)
	}
	// Its document directories were prepared with its schema (the
	// temporary one whatever Config.DocumentDirs says).
	b.mustHaveDocumentDir(t, tn.ID, ".tmp~")
	return tn
}

// mustHaveDocumentDir fails t unless the document store has the directory
// dir of tenant id.
func (b *bundle) mustHaveDocumentDir(t *testing.T, id, dir string) {
	t.Helper()
	if fi, err := os.Stat(filepath.Join(b.docs.Root(), id, dir)); err != nil || !fi.IsDir() {
		t.Fatalf("document directory %s of %s: %v", dir, id, err)
	}
}

// documentsExist reports whether the document store holds anything of
// tenant id, its directories included.
func (b *bundle) documentsExist(t *testing.T, id string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(b.docs.Root(), id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// audit returns the tenant's audit entries.
func (b *bundle) audit(t *testing.T, id string) []storage.AuditEntry {
	t.Helper()
	entries, err := b.catalog.AuditEntries(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// deletionRequestedFrom returns the status each of the tenant's
// tenant.deletion_requested audit entries says the deletion came from,
// oldest first.
func (b *bundle) deletionRequestedFrom(t *testing.T, id string) []string {
	t.Helper()
	var froms []string
	for _, e := range b.audit(t, id) {
		if e.Action != string(tenancy.ActionDeletionRequested) {
			continue
		}
		var detail struct {
			From string `json:"from"`
		}
		if err := json.Unmarshal(e.Detail, &detail); err != nil {
			t.Fatal(err)
		}
		froms = append(froms, detail.From)
	}
	return froms
}

// TestDeletionLeavesOneRequestedAndOneCompleted: a deletion asked for twice
// and a destroy run twice leave exactly one "deletion requested" entry
// (who, from which status, the destroy task) and one "deletion completed"
// entry (what was removed), in that order.
func TestDeletionLeavesOneRequestedAndOneCompleted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "doomed")
	var taskID string
	for range 2 {
		d, err := b.svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin)
		if err != nil {
			t.Fatal(err)
		}
		if d.Tenant.Status != tenantctx.StatusDeleting || d.TaskID != "tenant:destroy:"+tn.ID || (taskID != "" && d.TaskID != taskID) {
			t.Fatalf("RequestDeletion = %+v", d)
		}
		taskID = d.TaskID
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, taskID); err != nil {
		t.Fatalf("destroy task: %v", err)
	}
	deleting, err := b.catalog.TenantByID(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		done, err := b.svc.Destroy(b.ctx, deleting, tenancy.ActorWorker)
		if err != nil {
			t.Fatal(err)
		}
		if done.Schema != tn.Schema || !slices.Equal(done.Removed, []string{"schema", "documents", "api_keys", "catalog_row"}) {
			t.Fatalf("Destroy = %+v", done)
		}
	}
	if _, err := b.catalog.TenantByID(b.ctx, tn.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("catalog row after Destroy: %v", err)
	}

	var requested, completed []storage.AuditEntry
	var order []string
	for _, e := range b.audit(t, tn.ID) {
		switch tenancy.Action(e.Action) {
		case tenancy.ActionDeletionRequested:
			requested = append(requested, e)
			order = append(order, e.Action)
		case tenancy.ActionDeletionCompleted:
			completed = append(completed, e)
			order = append(order, e.Action)
		}
	}
	if len(requested) != 1 || len(completed) != 1 {
		t.Fatalf("%d requested and %d completed entries, want one each", len(requested), len(completed))
	}
	if order[0] != string(tenancy.ActionDeletionRequested) {
		t.Errorf("entries in the order %v, want requested first", order)
	}
	var req map[string]any
	if err := json.Unmarshal(requested[0].Detail, &req); err != nil {
		t.Fatal(err)
	}
	if requested[0].Actor != tenancy.ActorAdmin || req["slug"] != tn.Slug || req["from"] != "active" || req["task_id"] != taskID {
		t.Errorf("requested entry %+v, detail %v", requested[0], req)
	}
	var done tenancy.Erasure
	if err := json.Unmarshal(completed[0].Detail, &done); err != nil {
		t.Fatal(err)
	}
	if completed[0].Actor != tenancy.ActorWorker || done.Slug != tn.Slug || done.Schema != tn.Schema || len(done.Removed) != 4 {
		t.Errorf("completed entry %+v, detail %+v", completed[0], done)
	}
	if completed[0].At.Before(requested[0].At) {
		t.Errorf("completed at %v, before requested at %v", completed[0].At, requested[0].At)
	}
}

// TestConcurrentDeletionRequestsLeaveOneEntry: deletion requests that
// arrive together (an operator's double click, two retrying clients) leave
// one "deletion requested" entry between them.
func TestConcurrentDeletionRequestsLeaveOneEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "twice")
	const requests = 8
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for range requests {
		wg.Go(func() {
			if _, err := b.svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("RequestDeletion: %v", err)
	}
	var requested int
	for _, e := range b.audit(t, tn.ID) {
		if tenancy.Action(e.Action) == tenancy.ActionDeletionRequested {
			requested++
		}
	}
	if requested != 1 {
		t.Errorf("%d concurrent deletion requests left %d requested entries, want 1", requests, requested)
	}
}

// TestLifecycleFollowsTheStatusPolicy: what the status policy refuses or
// makes wait, the lifecycle refuses or makes wait.
func TestLifecycleFollowsTheStatusPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	live := b.active(t, "alive")
	if _, err := b.svc.Destroy(b.ctx, live, tenancy.ActorWorker); !errors.Is(err, tenancy.ErrNotReady) {
		t.Errorf("Destroy of an active tenant = %v, want ErrNotReady", err)
	}
	if ok, err := schema.Exists(b.ctx, b.pool, live.Schema); err != nil || !ok {
		t.Errorf("schema of an active tenant after a refused Destroy: exists=%v, %v", ok, err)
	}
	if _, err := b.svc.Migrate(b.ctx, live, schema.LatestVersion()+1, tenancy.ActorWorker); !errors.Is(err, tenancy.ErrInvalidTarget) {
		t.Errorf("Migrate above the latest version = %v, want ErrInvalidTarget", err)
	}

	gone := b.active(t, "going")
	if _, err := b.svc.RequestDeletion(b.ctx, gone.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	gone.Status = tenantctx.StatusDeleting
	if _, err := b.svc.Migrate(b.ctx, gone, 0, tenancy.ActorWorker); !errors.Is(err, tenancy.ErrRefused) {
		t.Errorf("Migrate of a deleting tenant = %v, want ErrRefused", err)
	}
	if _, _, err := b.svc.IssueKey(b.ctx, gone.ID, tenancy.ActorAdmin); !errors.Is(err, tenancy.ErrRefused) {
		t.Errorf("IssueKey for a deleting tenant = %v, want ErrRefused", err)
	}

	// A tenant seen provisioning, then deleted before its activation: the
	// migration is refused, the tenant stays deleting.
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "late"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.RequestDeletion(b.ctx, p.Tenant.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker); !errors.Is(err, tenancy.ErrRefused) {
		t.Errorf("activation of a tenant deleted meanwhile = %v, want ErrRefused", err)
	}

	// MigrateAll skips what the policy refuses a migration.
	all, err := b.svc.MigrateAll(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].TenantID != live.ID {
		t.Errorf("MigrateAll = %+v, want only %s", all, live.ID)
	}
}

// TestSuspendResumeAndKeys: status changes are audited once per change,
// not for no-ops; a provisioning tenant cannot be resumed; keys work and
// are audited.
func TestSuspendResumeAndKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "sleepy")
	for _, step := range []struct {
		change func(context.Context, string, string) (tenantctx.Tenant, error)
		want   tenantctx.Status
	}{
		{b.svc.Suspend, tenantctx.StatusSuspended},
		{b.svc.Suspend, tenantctx.StatusSuspended},
		{b.svc.Resume, tenantctx.StatusActive},
		{b.svc.Resume, tenantctx.StatusActive},
	} {
		got, err := step.change(b.ctx, tn.ID, tenancy.ActorAdmin)
		if err != nil || got.Status != step.want {
			t.Fatalf("status change = %s, %v; want %s", got.Status, err, step.want)
		}
	}
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "fresh"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.svc.Resume(b.ctx, p.Tenant.ID, tenancy.ActorAdmin); !errors.Is(err, storage.ErrInvalidTransition) || got.Status != tenantctx.StatusProvisioning {
		t.Errorf("Resume of a provisioning tenant = %s, %v; want ErrInvalidTransition", got.Status, err)
	}
	if _, err := b.svc.Suspend(b.ctx, tenantctx.NewID(), tenancy.ActorAdmin); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Suspend of an unknown tenant = %v, want ErrNotFound", err)
	}
	key, _, err := b.svc.IssueKey(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if owner, err := b.catalog.TenantForAPIKey(b.ctx, key); err != nil || owner != tn.ID {
		t.Errorf("issued key resolves to %q, %v", owner, err)
	}
	var actions []string
	for _, e := range b.audit(t, tn.ID) {
		actions = append(actions, e.Action)
	}
	want := []string{"tenant.provisioned", "tenant.migrated", "tenant.status_changed", "tenant.status_changed", "tenant.status_changed", "tenant.key_issued"}
	if !slices.Equal(actions, want) {
		t.Errorf("audit actions %v, want %v", actions, want)
	}
}

// TestLateMigrationLeavesSuspendedTenantSuspended: a migration run that
// resolved the tenant while it was still provisioning, and finishes after
// another run activated it and an operator suspended it, neither makes it
// active again nor records a second activation.
func TestLateMigrationLeavesSuspendedTenantSuspended(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "late"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	stale := p.Tenant // provisioning, as the late run resolved it
	if res, err := b.svc.Migrate(b.ctx, stale, 0, tenancy.ActorWorker); err != nil || !res.Activated {
		t.Fatalf("first Migrate = %+v, %v; want it activated", res, err)
	}
	if _, err := b.svc.Suspend(b.ctx, stale.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	res, err := b.svc.Migrate(b.ctx, stale, 0, tenancy.ActorWorker)
	if err != nil || res.Activated {
		t.Errorf("late Migrate = %+v, %v; want no error and no activation", res, err)
	}
	if got, err := b.catalog.TenantByID(b.ctx, stale.ID); err != nil || got.Status != tenantctx.StatusSuspended {
		t.Errorf("after the late Migrate the tenant is %s, %v; want suspended", got.Status, err)
	}
	activations := 0
	for _, e := range b.audit(t, stale.ID) {
		if tenancy.Action(e.Action) == tenancy.ActionStatusChanged && strings.Contains(string(e.Detail), `"to": "active"`) {
			activations++
		}
	}
	if activations != 1 {
		t.Errorf("%d activations in the audit log, want 1", activations)
	}
}

// TestMigrationThatFailsPartwayIsAudited: a migration that applies a step
// and is then blocked by the tenant's data at the next one committed the
// first (each step commits on its own) and no later run applies it again:
// its tenant.migrated entry records it, with what stopped the run, so that
// the entries name every version the schema went through.
func TestMigrationThatFailsPartwayIsAudited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "halfway"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Migrate(b.ctx, p.Tenant, 2, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	tn, err := b.catalog.TenantByID(b.ctx, p.Tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	q := pgx.Identifier{tn.Schema}.Sanitize()
	// Version 4 makes customers' emails unique (schema/migrations).
	if _, err := b.pool.Exec(b.ctx, `INSERT INTO `+q+`.customers (name, email) VALUES ('A', 'same@example.org'), ('B', 'same@example.org')`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Migrate(b.ctx, tn, 0, tenancy.ActorWorker); !errors.Is(err, tenancy.ErrBlockedByData) {
		t.Fatalf("Migrate = %v, want ErrBlockedByData", err)
	}
	if v, _ := schema.Version(b.ctx, b.pool, tn.Schema); v != 3 {
		t.Fatalf("version %d, want 3 (step 3 applied by the blocked run)", v)
	}
	if _, err := b.pool.Exec(b.ctx, `DELETE FROM `+q+`.customers WHERE name = 'B'`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Migrate(b.ctx, tn, 0, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	var applied []int
	var failed []string
	for _, e := range b.audit(t, tn.ID) {
		if e.Action != string(tenancy.ActionMigrated) {
			continue
		}
		var r tenancy.MigrateResult
		if err := json.Unmarshal(e.Detail, &r); err != nil {
			t.Fatal(err)
		}
		applied = append(applied, r.Applied...)
		if r.Failed != "" {
			failed = append(failed, r.Failed)
		}
	}
	slices.Sort(applied)
	if want := []int{1, 2, 3, 4, 5, 6}; !slices.Equal(applied, want) || len(failed) != 1 || !strings.Contains(failed[0], "version 4") {
		t.Errorf("versions in tenant.migrated entries %v, failed runs %q; want %v and one failed run at version 4", applied, failed, want)
	}
}

// unpropagatedActivation saves SetStatusFrom but reports its cache
// invalidation as not published, as storage.Cache does when Redis refuses.
type unpropagatedActivation struct{ storage.Catalog }

func (c unpropagatedActivation) SetStatusFrom(ctx context.Context, id string, from, to tenantctx.Status) (tenantctx.Tenant, error) {
	t, err := c.Catalog.SetStatusFrom(ctx, id, from, to)
	if err != nil {
		return t, err
	}
	return t, fmt.Errorf("%w: injected", storage.ErrInvalidationFailed)
}

// TestActivationNotPropagatedIsAudited: an activation saved in the catalog
// whose cache invalidation was not published fails the migration (other
// processes may still see the tenant provisioning) but is recorded: the
// retry finds the tenant active and has nothing left to record.
func TestActivationNotPropagatedIsAudited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	svc := tenancy.New(tenancy.Config{Catalog: unpropagatedActivation{b.catalog}, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	p, err := svc.Provision(b.ctx, tenancy.NewTenant{Slug: "lateaudit"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker); !errors.Is(err, storage.ErrInvalidationFailed) {
		t.Fatalf("Migrate, activation not propagated = %v, want ErrInvalidationFailed", err)
	}
	tn, err := b.catalog.TenantByID(b.ctx, p.Tenant.ID)
	if err != nil || tn.Status != tenantctx.StatusActive {
		t.Fatalf("after Migrate: %+v, %v; want active (the activation was saved)", tn, err)
	}
	for _, retry := range []tenantctx.Tenant{p.Tenant, tn} { // the task's retry, stale or not
		if _, err := svc.Migrate(b.ctx, retry, 0, tenancy.ActorWorker); err != nil {
			t.Fatalf("retried Migrate: %v", err)
		}
	}
	var changes []string
	for _, e := range b.audit(t, tn.ID) {
		if e.Action == string(tenancy.ActionStatusChanged) {
			changes = append(changes, string(e.Detail))
		}
	}
	if len(changes) != 1 || !strings.Contains(strings.ReplaceAll(changes[0], " ", ""), `"to":"active"`) {
		t.Errorf("tenant.status_changed entries %q, want one provisioning -> active", changes)
	}
}
