package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// migrateResult is the task result of tenant:migrate and the detail of its
// audit entry.
type migrateResult struct {
	Schema  string `json:"schema"`
	Created bool   `json:"created"`
	From    int    `json:"from"`
	To      int    `json:"to"`
	Applied []int  `json:"applied"`
}

// TenantMigrate handles tenant:migrate for the tenant in ctx (the tenant
// middleware lets it through for provisioning and active tenants): it
// creates the tenant's schema if missing and migrates it to p.Target (0:
// the latest version) on h.MigrationsPool. A provisioning tenant becomes
// active once its migrations succeeded (DESIGN.md: a new tenant is active
// only then). Audit entries: "tenant.migrate" {schema, created, from, to,
// applied} when the call changed the schema (a no-op run over every tenant
// writes nothing), and "tenant.status" {from, to} on activation. Its task
// result is {"schema","created","from","to","applied"}.
func (h *Handlers) TenantMigrate(ctx context.Context, p TenantMigrate) error {
	t, err := taskTenant(ctx, p)
	if err != nil {
		return err
	}
	if p.Target > schema.LatestVersion() {
		return Permanentf("migrate tenant %s: target version %d is above the latest %d", t.ID, p.Target, schema.LatestVersion())
	}
	r, err := schema.Migrate(ctx, h.migrationsPool(), t.Schema, p.Target)
	if err != nil {
		return fmt.Errorf("migrate tenant %s: %w", t.ID, err)
	}
	res := migrateResult{Schema: r.Schema, Created: r.Created, From: r.From, To: r.To, Applied: r.Applied}
	if res.Applied == nil {
		res.Applied = []int{}
	}
	log := h.log(ctx)
	if r.Created || len(r.Applied) > 0 {
		if err := h.audit(ctx, t.ID, "tenant.migrate", res); err != nil {
			return err
		}
		log.InfoContext(ctx, "tenant migrated", slog.String("schema", r.Schema),
			slog.Int("from", r.From), slog.Int("to", r.To), slog.Any("applied", r.Applied))
	}
	if t.Status == tenantctx.StatusProvisioning {
		_, err := h.Catalog.SetStatus(ctx, t.ID, tenantctx.StatusActive)
		switch {
		case errors.Is(err, storage.ErrInvalidTransition), errors.Is(err, storage.ErrNotFound):
			// Deleted or marked deleting while it was being provisioned.
			return Permanentf("activate tenant %s after migrating: %w", t.ID, err)
		case err != nil:
			return fmt.Errorf("activate tenant %s: %w", t.ID, err)
		}
		detail := map[string]string{"from": string(tenantctx.StatusProvisioning), "to": string(tenantctx.StatusActive)}
		if err := h.audit(ctx, t.ID, "tenant.status", detail); err != nil {
			return err
		}
		log.InfoContext(ctx, "tenant activated")
	}
	return writeResult(ctx, res)
}

// TenantDestroy handles tenant:destroy for the tenant in ctx (the tenant
// middleware runs it only for a deleting tenant). It erases, in order:
// the tenant's schema (schema.Drop, idempotent), its documents, its API
// keys, then writes the "tenant.delete" audit entry {slug, schema} (no
// personal data) and deletes the catalog row.
//
// Every step tolerates having been done before, so the task is safe to run
// twice and after a partial run. The audit entry is written before the
// catalog row goes: once the row is gone the tenant middleware archives any
// further run (unknown tenant), so an entry written afterwards could be
// lost for good; a rerun finds the entry and does not write a second one.
// If the catalog row is already gone when the task runs, the
// middleware archives the task without running it; that is acceptable,
// because the row is deleted last.
func (h *Handlers) TenantDestroy(ctx context.Context, p TenantDestroy) error {
	t, err := taskTenant(ctx, p)
	if err != nil {
		return err
	}
	if t.Status != tenantctx.StatusDeleting {
		// The middleware already refuses this; erasing a live tenant must
		// not depend on one check only.
		return fmt.Errorf("destroy tenant %s: status is %s, not deleting: %w", t.ID, t.Status, ErrTenantNotReady)
	}
	if err := schema.Drop(ctx, h.migrationsPool(), t.Schema); err != nil {
		return fmt.Errorf("destroy tenant %s: %w", t.ID, err)
	}
	if err := h.Documents.DeleteTenant(ctx, t.ID); err != nil {
		return fmt.Errorf("destroy tenant %s: delete documents: %w", t.ID, err)
	}
	if err := h.Catalog.RevokeAPIKeys(ctx, t.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("destroy tenant %s: revoke api keys: %w", t.ID, err)
	}
	detail := map[string]string{"slug": t.Slug, "schema": t.Schema}
	if err := h.auditOnce(ctx, t.ID, "tenant.delete", detail); err != nil {
		return err
	}
	if err := h.Catalog.DeleteTenant(ctx, t.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("destroy tenant %s: delete catalog row: %w", t.ID, err)
	}
	h.log(ctx).InfoContext(ctx, "tenant destroyed", slog.String("slug", t.Slug), slog.String("schema", t.Schema))
	return writeResult(ctx, detail)
}

// audit appends one entry by the worker to the audit log.
func (h *Handlers) audit(ctx context.Context, tenantID, action string, detail any) error {
	data, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	e := storage.AuditEntry{TenantID: tenantID, Actor: auditActor, Action: action, Detail: data}
	if err := h.Catalog.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("audit %s of tenant %s: %w", action, tenantID, err)
	}
	return nil
}

// auditOnce appends the entry unless the tenant's audit log already has one
// with this action (a rerun of an idempotent task).
func (h *Handlers) auditOnce(ctx context.Context, tenantID, action string, detail any) error {
	entries, err := h.Catalog.AuditEntries(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("read audit log of tenant %s: %w", tenantID, err)
	}
	for _, e := range entries {
		if e.Action == action {
			return nil
		}
	}
	return h.audit(ctx, tenantID, action, detail)
}
