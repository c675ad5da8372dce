package devstack

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestRunFinishesTheDeletionOfADemoTenantLeftDeleting: a stack on a kept
// DATABASE_URL that stopped after a demo tenant was marked deleting
// (DELETE /admin/tenants/{id}) but before its tenant:destroy ran left the
// task in its in-memory Redis, gone with it. The next run finishes the
// deletion and provisions the demo tenant again, as a run after the
// destroy would; it refused to start, telling to wait for a deletion that
// nothing would ever run.
func TestRunFinishesTheDeletionOfADemoTenantLeftDeleting(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	dataDir := testenv.SharedTempDir(t, "devstack-deleting")
	first, stop, _ := runStack(t, Options{DataDir: dataDir, DatabaseURL: url})
	if err := stop(); err != nil {
		t.Fatalf("first run: %v", err)
	}
	old := first.Tenants["acme"].ID

	// What DELETE /admin/tenants/{id} records before it enqueues the
	// destroy: the status and the request's audit entry.
	ctx := testContext(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	catalog := storage.NewPostgres(pool)
	if _, err := catalog.SetStatus(ctx, old, tenantctx.StatusDeleting); err != nil {
		t.Fatal(err)
	}
	detail, _ := json.Marshal(map[string]any{"slug": "acme", "from": "active", "task_id": "tenant:destroy:" + old, "discarded": 0})
	if err := catalog.AppendAudit(ctx, storage.AuditEntry{TenantID: old, Actor: "admin", Action: string(tenancy.ActionDeletionRequested), Detail: detail}); err != nil {
		t.Fatal(err)
	}

	second, stop, _ := runStack(t, Options{DataDir: dataDir, DatabaseURL: url})
	acme := second.Tenants["acme"]
	if acme.ID == "" || acme.ID == old || acme.Reused || acme.Invoice.ID == 0 {
		t.Fatalf("second run's acme = %+v (first run's id %s); want a new demo tenant, seeded", acme, old)
	}
	if _, err := catalog.TenantByID(ctx, old); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the tenant left deleting after the second run: %v; want it erased", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("second run: %v", err)
	}
}
