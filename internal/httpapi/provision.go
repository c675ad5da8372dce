package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// DefaultPlan is the plan of a tenant provisioned without one.
const DefaultPlan = "free"

// ProvisionResult is a newly provisioned tenant.
type ProvisionResult struct {
	// Tenant is the catalog row, status provisioning.
	Tenant tenantctx.Tenant
	// APIKey is the tenant's first API key; its plaintext exists only here.
	APIKey string
	// MigrateTaskID is the tenant:migrate task that creates the schema and
	// makes the tenant active.
	MigrateTaskID string
}

// Provision creates a tenant: validates the slug (tenantctx.New), inserts
// the catalog row in status provisioning, creates its first API key,
// records the audit entry "tenant.provision" and enqueues tenant:migrate,
// which creates the schema and activates the tenant. An empty name defaults
// to the slug, an empty plan to DefaultPlan. The HTTP API, the CLI and the
// dev mode all provision through here.
//
// Errors: tenantctx.ErrInvalidSlug or ErrReservedSlug for a bad slug,
// storage.ErrConflict for a taken one. A failure after the row was created
// leaves the tenant in provisioning and says so; `migrate --all` (which
// includes provisioning tenants) and POST /admin/tenants/{id}/keys finish
// it.
func Provision(ctx context.Context, catalog storage.Catalog, enqueuer *tasks.Enqueuer, slug, name, plan, actor string) (ProvisionResult, error) {
	if name == "" {
		name = slug
	}
	if plan == "" {
		plan = DefaultPlan
	}
	t, err := tenantctx.New(slug, name, plan)
	if err != nil {
		return ProvisionResult{}, fmt.Errorf("provision tenant: %w", err)
	}
	t, err = catalog.CreateTenant(ctx, t)
	if err != nil {
		return ProvisionResult{}, fmt.Errorf("provision tenant %s: %w", slug, err)
	}
	key, err := catalog.CreateAPIKey(ctx, t.ID)
	if err != nil {
		return ProvisionResult{}, fmt.Errorf("provision tenant %s (%s created, still provisioning): create api key: %w", slug, t.ID, err)
	}
	detail, _ := json.Marshal(map[string]string{"slug": t.Slug, "plan": t.Plan})
	if err := catalog.AppendAudit(ctx, storage.AuditEntry{
		TenantID: t.ID, Actor: actor, Action: "tenant.provision", Detail: detail,
	}); err != nil {
		return ProvisionResult{}, fmt.Errorf("provision tenant %s (%s created, still provisioning): audit: %w", slug, t.ID, err)
	}
	res, err := enqueuer.Enqueue(ctx, tasks.TenantMigrate{TenantID: t.ID})
	if err != nil {
		return ProvisionResult{}, fmt.Errorf("provision tenant %s (%s created, still provisioning): %w", slug, t.ID, err)
	}
	return ProvisionResult{Tenant: t, APIKey: key, MigrateTaskID: res.Info.ID}, nil
}

// MigrationTask is one tenant:migrate enqueued by MigrateAll.
type MigrationTask struct {
	TenantID string `json:"tenant_id"`
	Slug     string `json:"slug"`
	TaskID   string `json:"task_id"`
	// Existing is true when a migration of the tenant was already pending
	// and is the one reported.
	Existing bool `json:"existing"`
}

// MigrateAll pages through every tenant that is provisioning, active or
// suspended (not deleting) and enqueues tenant:migrate for each. A tenant
// whose migration is still pending keeps that task (one pending per
// tenant). It returns the tasks enqueued before any error, so a caller can
// report partial progress.
func MigrateAll(ctx context.Context, catalog storage.Catalog, enqueuer *tasks.Enqueuer) ([]MigrationTask, error) {
	var out []MigrationTask
	opts := storage.ListOptions{Limit: storage.MaxPageSize}
	for {
		page, err := catalog.ListTenants(ctx, opts)
		if err != nil {
			return out, fmt.Errorf("migrate all: list tenants after %q: %w", opts.After, err)
		}
		for _, t := range page {
			if t.Status == tenantctx.StatusDeleting {
				continue
			}
			res, err := enqueuer.Enqueue(ctx, tasks.TenantMigrate{TenantID: t.ID})
			if err != nil {
				return out, fmt.Errorf("migrate all: tenant %s: %w", t.ID, err)
			}
			out = append(out, MigrationTask{TenantID: t.ID, Slug: t.Slug, TaskID: res.Info.ID, Existing: res.Existing})
		}
		if len(page) < opts.PageLimit() {
			return out, nil
		}
		opts.After = page[len(page)-1].ID
	}
}

// provisionStatus maps Provision's errors to HTTP statuses.
func provisionStatus(err error) int {
	switch {
	case errors.Is(err, tenantctx.ErrInvalidSlug), errors.Is(err, tenantctx.ErrReservedSlug):
		return 400
	case errors.Is(err, storage.ErrConflict):
		return 409
	}
	return 500
}
