package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// auditActor names the dev stack in the audit log.
const auditActor = "devstack"

// provisioned is a demo tenant with a fresh API key.
type provisioned struct {
	tenant tenantctx.Tenant
	apiKey string
	reused bool // it existed before this run
}

// provisionDemo provisions a demo tenant through httpapi.Provision, the
// code path of POST /admin/tenants. When the slug is taken (a second run
// on the same DATABASE_URL) it reuses the tenant: it enqueues tenant:migrate
// for a provisioning or active tenant (finishing an interrupted provisioning,
// or applying migrations added since) and creates a new API key, because
// only hashes of earlier keys are stored.
func provisionDemo(ctx context.Context, catalog storage.Catalog, enq *tasks.Enqueuer, d demoTenant) (provisioned, error) {
	res, err := httpapi.Provision(ctx, catalog, enq, d.slug, d.name, "", auditActor)
	if err == nil {
		return provisioned{tenant: res.Tenant, apiKey: res.APIKey}, nil
	}
	if !errors.Is(err, storage.ErrConflict) {
		return provisioned{}, err
	}
	t, err := catalog.TenantBySlug(ctx, d.slug)
	if err != nil {
		return provisioned{}, fmt.Errorf("reuse tenant %s: %w", d.slug, err)
	}
	switch t.Status {
	case tenantctx.StatusDeleting:
		return provisioned{}, fmt.Errorf("reuse tenant %s (%s): it is being deleted; wait for the deletion or use another database", d.slug, t.ID)
	case tenantctx.StatusProvisioning, tenantctx.StatusActive:
		// A provisioning tenant: an earlier run stopped before its
		// migration ran. An active one may lag behind migrations added
		// since; migrating it is a no-op otherwise. One pending migration
		// per tenant, so this never doubles one.
		if _, err := enq.Enqueue(ctx, tasks.TenantMigrate{TenantID: t.ID}); err != nil {
			return provisioned{}, fmt.Errorf("reuse tenant %s (%s): %w", d.slug, t.ID, err)
		}
	}
	key, err := catalog.CreateAPIKey(ctx, t.ID)
	if err != nil {
		return provisioned{}, fmt.Errorf("reuse tenant %s (%s): create api key: %w", d.slug, t.ID, err)
	}
	detail, _ := json.Marshal(map[string]string{"slug": t.Slug})
	if err := catalog.AppendAudit(ctx, storage.AuditEntry{
		TenantID: t.ID, Actor: auditActor, Action: "tenant.key", Detail: detail,
	}); err != nil {
		return provisioned{}, fmt.Errorf("reuse tenant %s (%s): audit: %w", d.slug, t.ID, err)
	}
	return provisioned{tenant: t, apiKey: key, reused: true}, nil
}

// waitActive polls the catalog until the tenant is active (its
// tenant:migrate task ran) and returns it. A suspended tenant is reported
// at once: it will not become active by waiting.
func waitActive(ctx context.Context, store storage.TenantStore, id string, timeout time.Duration) (tenantctx.Tenant, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		t, err := store.TenantByID(ctx, id)
		switch {
		case err == nil && t.Status == tenantctx.StatusActive:
			return t, nil
		case err == nil && t.Status == tenantctx.StatusSuspended:
			return t, fmt.Errorf("tenant %s (%s) is suspended; resume it with POST /admin/tenants/%s/resume", t.Slug, id, id)
		case err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
			return t, fmt.Errorf("wait for tenant %s to become active: %w", id, err)
		}
		select {
		case <-ctx.Done():
			if err := context.Cause(ctx); errors.Is(err, context.DeadlineExceeded) {
				return t, fmt.Errorf("tenant %s (%s) is still %s after %s: its tenant:migrate task has not finished (see the worker log and the dashboard)", t.Slug, id, t.Status, timeout)
			}
			return t, ctx.Err()
		case <-tick.C:
		}
	}
}

// sampleInvoice is the invoice the banner's curl commands use.
type sampleInvoice struct {
	ID     int64  `json:"id"`
	Number string `json:"number"`
}

// firstInvoice returns the tenant's invoice with the lowest id.
func firstInvoice(ctx context.Context, pool *pgxpool.Pool, t tenantctx.Tenant) (sampleInvoice, error) {
	var inv sampleInvoice
	err := schema.InTenant(tenantctx.WithTenant(ctx, t), pool, func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT id, number FROM invoices ORDER BY id LIMIT 1").Scan(&inv.ID, &inv.Number)
	})
	if err != nil {
		return inv, fmt.Errorf("first invoice of tenant %s: %w", t.Slug, err)
	}
	return inv, nil
}
