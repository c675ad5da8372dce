package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Handlers holds what the task handlers need. Build one at start-up and
// register it with NewServeMux. Handlers log through LoggerFromContext,
// the Log middleware's logger with the task's attributes.
type Handlers struct {
	// Pool is the application pool of "main" (empty search_path; see
	// package schema); it serves tenants placed there when Pools is nil.
	Pool *pgxpool.Pool
	// Pools reaches each tenant's database (package placement); the
	// binaries set it.
	Pools *placement.Registry
	// Catalog is the (cached) tenant catalog.
	Catalog storage.Catalog
	// Documents stores rendered PDFs.
	Documents storage.DocumentStore
	// Mailer sends reminders.
	Mailer mailer.Mailer
	// Enqueuer enqueues follow-up tasks (sweep fan-out, reminders).
	Enqueuer *tasks.Enqueuer
	// Tenancy migrates and destroys tenants (tenant:migrate,
	// tenant:destroy).
	Tenancy *tenancy.Service
	// MailFrom is the From address of reminders.
	MailFrom string
	// ReminderSendHour is the hour of each tenant's own day (0 to 23, in
	// its time zone: tenantctx.Tenant.Today) from which invoices:overdue
	// enqueues reminders (REMINDER_SEND_HOUR); before it, the sweep marks
	// overdue invoices and defers the reminders to a later sweep of the
	// day. 0 enqueues them at any hour. Reminders asked for
	// (invoice:reminder) are never deferred.
	ReminderSendHour int
	// PDFMaxLines, PDFMaxLineBytes, PDFMaxBytes and PDFMaxPages limit
	// invoice:pdf and the PDFs rendered for reminders (pdf.Renderer's
	// MaxLines, MaxLineBytes, MaxBytes and MaxPages): an invoice over any
	// of them is archived with the reason. 0 means the renderer's
	// defaults.
	PDFMaxLines     int
	PDFMaxLineBytes int64
	PDFMaxBytes     int64
	PDFMaxPages     int
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time

	// pageSize, when set (by a test), is how many overdue invoices and
	// swept tenants are read at once.
	pageSize int
	// beforeRender, when set (by a test), is called with the task's ctx
	// right before a PDF is rendered.
	beforeRender func(ctx context.Context)
	// finishReserve, when set (by a test), replaces
	// reminderFinishReserve.
	finishReserve time.Duration
}

// page returns h.pageSize, or def.
func (h *Handlers) page(def int) int {
	if h.pageSize > 0 {
		return h.pageSize
	}
	return def
}

// now returns the handlers' current time: h.Now, or time.Now.
func (h *Handlers) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// taskTenant returns the tenant ResolveTenant put into ctx and checks that
// it is the payload's tenant. Without a tenant, or with another one, the
// handler was wired wrongly; the task is archived rather than run against
// the wrong data or retried for nothing.
func taskTenant(ctx context.Context, p tasks.TenantPayload) (tenantctx.Tenant, error) {
	t, ok := tenantctx.FromContext(ctx)
	if !ok {
		return tenantctx.Tenant{}, Permanentf("%s task for tenant %s: no tenant in context (ResolveTenant missing)", p.TypeName(), p.Owner())
	}
	if t.ID != p.Owner() {
		return tenantctx.Tenant{}, Permanentf("%s task for tenant %s runs with tenant %s in context", p.TypeName(), p.Owner(), t.ID)
	}
	return t, nil
}

// tenantPool returns the pool of the database holding t (Pools, or Pool
// for a tenant on "main" without a registry). A database that cannot be
// opened is an ordinary error: the task is retried.
func (h *Handlers) tenantPool(ctx context.Context, t tenantctx.Tenant) (*pgxpool.Pool, error) {
	pool, err := placement.PoolFor(ctx, h.Pools, h.Pool, t)
	if err != nil {
		return nil, fmt.Errorf("reach the database of tenant %s: %w", t.ID, err)
	}
	return pool, nil
}

// writeResult stores v as the task's result. A task run outside an asynq
// server (tests, workertest) has no result writer; that is not an error.
func writeResult(ctx context.Context, v any) error {
	if err := WriteResult(ctx, v); err != nil && !errors.Is(err, ErrNoResultWriter) {
		return err
	}
	return nil
}
