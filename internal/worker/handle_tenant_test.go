package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// auditActions returns the actions of a tenant's audit entries, oldest
// first, and the entries.
func auditActions(t *testing.T, e *handlerEnv, tenantID string) ([]string, []storage.AuditEntry) {
	t.Helper()
	entries, err := e.catalog.AuditEntries(e.ctx, tenantID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		out = append(out, en.Action)
	}
	return out, entries
}

func TestTenantMigrateActivatesNewTenant(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	tn, err := tenantctx.New("fresh", "Fresh Ltd", "free")
	if err != nil {
		t.Fatal(err)
	}
	if tn, err = e.catalog.CreateTenant(e.ctx, tn); err != nil {
		t.Fatal(err)
	}
	if err := e.work(tasks.TenantMigrate{TenantID: tn.ID}); err != nil {
		t.Fatalf("TenantMigrate: %v", err)
	}
	got, err := e.catalog.TenantByID(e.ctx, tn.ID)
	if err != nil || got.Status != tenantctx.StatusActive {
		t.Fatalf("tenant after migrate: %+v, %v; want active", got, err)
	}
	if v, err := schema.Version(e.ctx, e.pool, tn.Schema); err != nil || v != schema.LatestVersion() {
		t.Fatalf("schema version %d (%v), want %d", v, err, schema.LatestVersion())
	}
	actions, entries := auditActions(t, e, tn.ID)
	if strings.Join(actions, ",") != "tenant.migrated,tenant.status_changed" {
		t.Fatalf("audit actions %v, want [tenant.migrated tenant.status_changed]", actions)
	}
	var detail tenancy.MigrateResult
	if err := json.Unmarshal(entries[0].Detail, &detail); err != nil {
		t.Fatal(err)
	}
	if detail.Schema != tn.Schema || detail.From != 0 || detail.To != schema.LatestVersion() ||
		len(detail.Applied) != schema.LatestVersion() || !detail.Created {
		t.Errorf("tenant.migrated detail %+v", detail)
	}
	if entries[0].Actor != tenancy.ActorWorker {
		t.Errorf("actor %q, want %q", entries[0].Actor, tenancy.ActorWorker)
	}

	// Again, now active and up to date: nothing to do, nothing audited.
	if err := e.work(tasks.TenantMigrate{TenantID: tn.ID}); err != nil {
		t.Fatalf("second TenantMigrate: %v", err)
	}
	if actions, _ := auditActions(t, e, tn.ID); len(actions) != 2 {
		t.Errorf("a no-op migration wrote audit entries: %v", actions)
	}
}

func TestTenantMigrateStepwiseTarget(t *testing.T) {
	t.Parallel()
	if schema.LatestVersion() < 2 {
		t.Fatalf("this test needs at least 2 migrations, have %d", schema.LatestVersion())
	}
	e := newHandlerEnv(t, nil)
	// Provisioning: only a provisioning tenant's migration creates its schema.
	tn := addTenant(t, e.catalog, "stepwise", tenantctx.StatusProvisioning)
	if err := e.work(tasks.TenantMigrate{TenantID: tn.ID, Target: 1}); err != nil {
		t.Fatal(err)
	}
	if v, _ := schema.Version(e.ctx, e.pool, tn.Schema); v != 1 {
		t.Fatalf("version %d after target 1", v)
	}
	if err := e.work(tasks.TenantMigrate{TenantID: tn.ID}); err != nil {
		t.Fatal(err)
	}
	if v, _ := schema.Version(e.ctx, e.pool, tn.Schema); v != schema.LatestVersion() {
		t.Fatalf("version %d after target latest", v)
	}
	err := e.work(tasks.TenantMigrate{TenantID: tn.ID, Target: schema.LatestVersion() + 1})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("target above latest: %v, want a permanent error", err)
	}
}

func TestTenantMigrateDoesNotActivateDeletingTenant(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	tn := addTenant(t, e.catalog, "doomed", tenantctx.StatusProvisioning)
	// The task saw it provisioning (past the chain on purpose: the chain
	// reads the status now), then an operator deleted it.
	if _, err := e.catalog.SetStatus(e.ctx, tn.ID, tenantctx.StatusDeleting); err != nil {
		t.Fatal(err)
	}
	err := e.h.TenantMigrate(e.tenantCtx(tn), tasks.TenantMigrate{TenantID: tn.ID})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("TenantMigrate = %v, want a permanent error", err)
	}
	if got, _ := e.catalog.TenantByID(e.ctx, tn.ID); got.Status != tenantctx.StatusDeleting {
		t.Fatalf("status %s, want deleting", got.Status)
	}
	if ok, err := schema.Exists(e.ctx, e.pool, tn.Schema); err != nil || ok {
		t.Fatalf("schema of the deleting tenant exists = %v (%v), want it never created", ok, err)
	}
}

func TestTenantDestroyErasesEverythingAndIsRepeatable(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	gone := e.provision(t, "gone", "Gone Ltd")
	kept := e.provision(t, "kept", "Kept Ltd")
	for _, tn := range []tenantctx.Tenant{gone, kept} {
		id := e.addInvoice(t, tn, acmeCustomer, acmeInvoice)
		if err := e.work(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	key, err := e.catalog.CreateAPIKey(e.ctx, gone.ID)
	if err != nil {
		t.Fatal(err)
	}
	keptKey, err := e.catalog.CreateAPIKey(e.ctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	gone, err = e.catalog.SetStatus(e.ctx, gone.ID, tenantctx.StatusDeleting)
	if err != nil {
		t.Fatal(err)
	}

	for run := range 2 {
		// The second run finds no catalog row, so the chain would archive
		// it; past the chain, Destroy must tolerate the finished erasure.
		var err error
		if run == 0 {
			err = e.work(tasks.TenantDestroy{TenantID: gone.ID})
		} else {
			err = e.h.TenantDestroy(e.tenantCtx(gone), tasks.TenantDestroy{TenantID: gone.ID})
		}
		if err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
		if ok, err := schema.Exists(e.ctx, e.pool, gone.Schema); err != nil || ok {
			t.Errorf("run %d: schema %s exists=%v (%v)", run+1, gone.Schema, ok, err)
		}
		if _, err := os.Stat(filepath.Join(e.docs.Root(), gone.ID)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("run %d: documents directory of the tenant: %v, want it gone", run+1, err)
		}
		if _, _, err := e.docs.Open(e.ctx, gone.ID, invoice.DocumentKey(1)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("run %d: document: %v, want ErrNotFound", run+1, err)
		}
		if _, err := e.catalog.TenantForAPIKey(e.ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("run %d: API key still resolves: %v", run+1, err)
		}
		if _, err := e.catalog.TenantByID(e.ctx, gone.ID); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("run %d: catalog row: %v, want ErrNotFound", run+1, err)
		}
		actions, entries := auditActions(t, e, gone.ID)
		var deletes []storage.AuditEntry
		for i, a := range actions {
			if a == string(tenancy.ActionDeletionCompleted) {
				deletes = append(deletes, entries[i])
			}
		}
		if len(deletes) != 1 {
			t.Fatalf("run %d: %d %s audit entries, want 1 (%v)", run+1, len(deletes), tenancy.ActionDeletionCompleted, actions)
		}
		var detail map[string]any
		if err := json.Unmarshal(deletes[0].Detail, &detail); err != nil {
			t.Fatal(err)
		}
		if len(detail) != 3 || detail["slug"] != gone.Slug || detail["schema"] != gone.Schema ||
			fmt.Sprint(detail["removed"]) != "[schema documents api_keys catalog_row]" {
			t.Errorf("%s detail %v, want exactly slug, schema and what was removed", tenancy.ActionDeletionCompleted, detail)
		}
	}

	// The other tenant is untouched.
	if ok, _ := schema.Exists(e.ctx, e.pool, kept.Schema); !ok {
		t.Error("the other tenant's schema is gone")
	}
	if len(e.readDocument(t, kept, invoice.DocumentKey(1))) == 0 {
		t.Error("the other tenant's document is empty")
	}
	if id, err := e.catalog.TenantForAPIKey(e.ctx, keptKey); err != nil || id != kept.ID {
		t.Errorf("the other tenant's key: %q, %v", id, err)
	}
}

func TestTenantDestroyRefusesLiveTenant(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	tn := e.provision(t, "alive", "Alive")
	// Through the chain (the status policy makes it wait) and past it
	// (tenancy.Destroy checks again).
	err := e.work(tasks.TenantDestroy{TenantID: tn.ID})
	if !errors.Is(err, worker.ErrTenantNotReady) {
		t.Fatalf("TenantDestroy of an active tenant through the chain = %v, want ErrTenantNotReady", err)
	}
	err = e.h.TenantDestroy(e.tenantCtx(tn), tasks.TenantDestroy{TenantID: tn.ID})
	if !errors.Is(err, worker.ErrTenantNotReady) {
		t.Fatalf("TenantDestroy of an active tenant = %v, want ErrTenantNotReady", err)
	}
	if ok, _ := schema.Exists(e.ctx, e.pool, tn.Schema); !ok {
		t.Fatal("schema of an active tenant dropped")
	}
}

// TestTenantMigrateBlockedByDataIsArchivedAtOnce: a step that the
// tenant's own data refuses (version 4 over customers sharing an email
// address) fails the same way on every retry until an operator changes
// the data, so the task is archived at once with the step's reason
// instead of being retried for hours; the schema stays at version 3.
func TestTenantMigrateBlockedByDataIsArchivedAtOnce(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	tn := addTenant(t, e.catalog, "dupes", tenantctx.StatusProvisioning)
	if err := e.work(tasks.TenantMigrate{TenantID: tn.ID, Target: 3}); err != nil {
		t.Fatal(err)
	}
	tn, err := e.catalog.TenantByID(e.ctx, tn.ID)
	if err != nil || tn.Status != tenantctx.StatusActive {
		t.Fatalf("tenant after migrating to 3: %+v, %v", tn, err)
	}
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO customers (name, email) VALUES ('A', 'same@example.org'), ('B', 'same@example.org')`)
		return err
	})
	err = e.work(tasks.TenantMigrate{TenantID: tn.ID})
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "customers.email must be unique: 1 email addresses") {
		t.Fatalf("TenantMigrate over duplicate emails = %v; want it archived at once with the step's reason", err)
	}
	if v, err := schema.Version(e.ctx, e.pool, tn.Schema); err != nil || v != 3 {
		t.Fatalf("version %d (%v), want 3", v, err)
	}

	// Merged by an operator: the next migration goes through.
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM customers WHERE name = 'B'`)
		return err
	})
	if err := e.work(tasks.TenantMigrate{TenantID: tn.ID}); err != nil {
		t.Fatalf("TenantMigrate after the merge: %v", err)
	}
	if v, err := schema.Version(e.ctx, e.pool, tn.Schema); err != nil || v != schema.LatestVersion() {
		t.Fatalf("version %d (%v), want %d", v, err, schema.LatestVersion())
	}
}
