package devstack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
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

// beingDeletedError is provisionDemo's error for a demo tenant being
// deleted (finishDeletion ends that).
type beingDeletedError struct{ tenant tenantctx.Tenant }

func (e *beingDeletedError) Error() string {
	return fmt.Sprintf("reuse tenant %s (%s): it is being deleted", e.tenant.Slug, e.tenant.ID)
}

// provisionDemo provisions a demo tenant through tenancy.Service.Provision,
// the code path of POST /admin/tenants. When the slug is taken (a second
// run on the same DATABASE_URL) it reuses the tenant: unless the status
// policy refuses a migration (the tenant is being deleted: a
// *beingDeletedError, which finishDeletion ends), it resumes a
// suspended tenant (the stack cannot start without it active, and its
// admin API would only run once it is) and a paused queue (the catalog
// records the pause, and this run's fair dispatch would put it back,
// holding every task of the tenant), enqueues
// tenant:migrate (finishing an interrupted provisioning, or applying
// migrations added since; one pending per tenant, so this never doubles
// one), and it issues a new API key, because only hashes of earlier keys
// are stored.
func provisionDemo(ctx context.Context, svc *tenancy.Service, catalog storage.Catalog, d demoTenant) (provisioned, error) {
	res, err := svc.Provision(ctx, tenancy.NewTenant{Slug: d.slug, Name: d.name, TimeZone: d.timeZone}, auditActor)
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
	if t.Status.Decide(tenantctx.Migration) == tenantctx.Refuse {
		return provisioned{}, &beingDeletedError{tenant: t}
	}
	if t.Status == tenantctx.StatusSuspended {
		// Suspended by an earlier run (POST /admin/tenants/{id}/suspend):
		// resume it, since the stack needs it active and no admin API runs
		// until it is.
		if t, err = svc.Resume(ctx, t.ID, auditActor); err != nil {
			return provisioned{}, fmt.Errorf("reuse tenant %s: resume it: %w", d.slug, err)
		}
	}
	paused, err := catalog.PausedTenants(ctx)
	if err != nil {
		return provisioned{}, fmt.Errorf("reuse tenant %s (%s): %w", d.slug, t.ID, err)
	}
	if slices.Contains(paused, t.ID) {
		// Paused by an earlier run (POST /admin/tenants/{id}/queue/pause):
		// the pause would hold the tenant's tasks in this run too, the
		// banner's render and the migration below included.
		if err := svc.ResumeQueue(ctx, t.ID, auditActor); err != nil {
			return provisioned{}, fmt.Errorf("reuse tenant %s (%s): resume its queue: %w", d.slug, t.ID, err)
		}
	}
	if _, err := svc.EnqueueMigration(ctx, t); err != nil {
		return provisioned{}, fmt.Errorf("reuse tenant %s (%s): %w", d.slug, t.ID, err)
	}
	key, _, err := svc.IssueKey(ctx, t.ID, auditActor)
	if err != nil {
		return provisioned{}, fmt.Errorf("reuse tenant %s (%s): %w", d.slug, t.ID, err)
	}
	return provisioned{tenant: t, apiKey: key, reused: true}, nil
}

// finishDeletion finishes the deletion of t, a demo tenant being deleted:
// asked for again, which enqueues its tenant:destroy again (the dev
// stack's Redis is in memory, so a destroy enqueued by an earlier run that
// stopped before it ran is gone with it), then waited for until the
// catalog no longer has the tenant, at most timeout. The worker of this
// stack runs the destroy.
func finishDeletion(ctx context.Context, svc *tenancy.Service, catalog storage.TenantStore, t tenantctx.Tenant, timeout time.Duration) error {
	if _, err := svc.RequestDeletion(ctx, t.ID, auditActor); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil // erased meanwhile
		}
		return fmt.Errorf("finish the deletion of tenant %s (%s): %w", t.Slug, t.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := catalog.TenantByID(ctx, t.ID)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return nil
		case err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
			return fmt.Errorf("wait for the deletion of tenant %s (%s): %w", t.Slug, t.ID, err)
		}
		select {
		case <-ctx.Done():
			if err := context.Cause(ctx); errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("tenant %s (%s) is still being deleted after %s: its tenant:destroy has not finished (see the worker log and the dashboard)", t.Slug, t.ID, timeout)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
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
		first, err := invoice.Page(ctx, tx, 0, 1)
		if err != nil {
			return err
		}
		if len(first) == 0 {
			return invoice.ErrNotFound
		}
		inv = sampleInvoice{ID: first[0].ID, Number: first[0].Number}
		return nil
	})
	if err != nil {
		return inv, fmt.Errorf("first invoice of tenant %s: %w", t.Slug, err)
	}
	return inv, nil
}
