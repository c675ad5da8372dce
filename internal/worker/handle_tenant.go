package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TenantMigrate handles tenant:migrate for the tenant in ctx (the status
// policy lets it run for provisioning, active and suspended tenants):
// tenancy.Service.Migrate creates the schema of a provisioning tenant if
// missing (never one of another tenant), migrates it to p.Target (0: the
// latest version) and activates a provisioning tenant, writing the audit
// entries. A retried run also records what the failed attempt applied and
// did not record (tenancy.Service.RecordUnrecordedSteps: a worker killed
// between the steps' commits and their entry) and an activation whose
// answer was lost. Its task result is {"schema","created","from","to","applied"}.
func (h *Handlers) TenantMigrate(ctx context.Context, p tasks.TenantMigrate) error {
	t, err := taskTenant(ctx, p)
	if err != nil {
		return err
	}
	res, err := h.Tenancy.Migrate(ctx, t, p.Target, tenancy.ActorWorker)
	if err != nil {
		return lifecycleError(err)
	}
	n, _ := asynq.GetRetryCount(ctx)
	if n > 0 {
		// The failed attempt (a killed worker's, say) may have applied
		// steps it did not live to record.
		if err := h.Tenancy.RecordUnrecordedSteps(ctx, t, res.From, tenancy.ActorWorker); err != nil {
			return lifecycleError(err)
		}
	}
	if n > 0 && !res.Activated && t.Status != tenantctx.StatusProvisioning {
		// The failed attempt may have activated the tenant and lost the
		// answer before recording it.
		if err := h.Tenancy.RecordActivation(ctx, t.ID, tenancy.ActorWorker); err != nil {
			return lifecycleError(err)
		}
	}
	log := LoggerFromContext(ctx)
	if res.Created || len(res.Applied) > 0 {
		log.InfoContext(ctx, "tenant migrated", slog.String("schema", res.Schema),
			slog.Int("from", res.From), slog.Int("to", res.To), slog.Any("applied", res.Applied))
	}
	if res.Activated {
		log.InfoContext(ctx, "tenant activated")
	}
	return writeResult(ctx, res)
}

// TenantDestroy handles tenant:destroy for the tenant in ctx (the status
// policy runs it only for a tenant marked deleting): tenancy.Service.Destroy
// erases schema, documents, API keys and catalog row and records the
// deletion's completion. It is safe to run twice. Its task result is
// {"slug","schema","removed"}.
//
// A run whose tenant the catalog no longer has (ErasedTenant: a run before
// it deleted the row and was cut off, its answer lost at the delete's
// commit or the worker killed) finishes that erasure
// (tenancy.Service.FinishErased) and completes with the same result; with
// no erasure of the tenant recorded it is archived like any task of an
// unknown tenant.
func (h *Handlers) TenantDestroy(ctx context.Context, p tasks.TenantDestroy) error {
	if id, ok := ErasedTenant(ctx); ok && id == p.TenantID {
		done, err := h.Tenancy.FinishErased(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			return tenantGone("tenant %s not found (deleted or never existed)", id)
		}
		if err != nil {
			return err
		}
		LoggerFromContext(ctx).InfoContext(ctx, "tenant destroy finished after its catalog row was deleted",
			slog.String("slug", done.Slug), slog.String("schema", done.Schema))
		return writeResult(ctx, done)
	}
	t, err := taskTenant(ctx, p)
	if err != nil {
		return err
	}
	done, err := h.Tenancy.Destroy(ctx, t, tenancy.ActorWorker)
	if err != nil {
		return lifecycleError(err)
	}
	LoggerFromContext(ctx).InfoContext(ctx, "tenant destroyed", slog.String("slug", done.Slug), slog.String("schema", done.Schema))
	return writeResult(ctx, done)
}

// lifecycleError turns the lifecycle's refusals into the task's fate: a
// refusal, a migration the tenant's data blocks (retried it would fail
// the same way until an operator changes the data), or one whose schema
// recorded other migrations than this release's (schema.ErrMigrationMismatch:
// it fails the same way until the release is fixed) archives the task
// with its reason; a wait retries it without counting a failure; anything
// else is retried.
func lifecycleError(err error) error {
	switch {
	case errors.Is(err, tenancy.ErrRefused), errors.Is(err, tenancy.ErrInvalidTarget), errors.Is(err, tenancy.ErrBlockedByData),
		errors.Is(err, schema.ErrMigrationMismatch):
		return Permanent(err)
	case errors.Is(err, tenancy.ErrNotReady):
		return fmt.Errorf("%w: %w", err, ErrTenantNotReady)
	}
	return err
}
