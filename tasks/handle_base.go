package tasks

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/tenantctx"
)

// auditActor is the actor of the audit entries the handlers write.
const auditActor = "worker"

// now returns the handlers' current time: h.Now, or time.Now.
func (h *Handlers) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// log returns h.Logger (or slog.Default()) with the task's tenant_id and
// task_id, when ctx has them.
func (h *Handlers) log(ctx context.Context) *slog.Logger {
	l := h.Logger
	if l == nil {
		l = slog.Default()
	}
	if t, ok := tenantctx.FromContext(ctx); ok {
		l = l.With(slog.String("tenant_id", t.ID))
	}
	if id, ok := asynq.GetTaskID(ctx); ok {
		l = l.With(slog.String("task_id", id))
	}
	return l
}

// migrationsPool returns the pool for schema changes.
func (h *Handlers) migrationsPool() *pgxpool.Pool {
	if h.MigrationsPool != nil {
		return h.MigrationsPool
	}
	return h.Pool
}

// taskTenant returns the tenant the tenant middleware put into ctx and
// checks that it is the payload's tenant. Without a tenant, or with another
// one, the handler was wired wrongly; the task is archived rather than run
// against the wrong data or retried for nothing.
func taskTenant(ctx context.Context, p TenantPayload) (tenantctx.Tenant, error) {
	t, ok := tenantctx.FromContext(ctx)
	if !ok {
		return tenantctx.Tenant{}, Permanentf("%s task for tenant %s: no tenant in context (tenant middleware missing)", p.TypeName(), p.Tenant())
	}
	if t.ID != p.Tenant() {
		return tenantctx.Tenant{}, Permanentf("%s task for tenant %s runs with tenant %s in context", p.TypeName(), p.Tenant(), t.ID)
	}
	return t, nil
}

// writeResult stores v as the task's result. A handler called directly
// (tests, the CLI) has no result writer; that is not an error.
func writeResult(ctx context.Context, v any) error {
	if err := WriteResult(ctx, v); err != nil && !errors.Is(err, ErrNoResultWriter) {
		return err
	}
	return nil
}
