package worker

import (
	"context"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// MuxOptions configures NewServeMux and Chain. Catalog is required (in
// NewServeMux it defaults to the Handlers' catalog).
type MuxOptions struct {
	// Logger receives the task log lines and panic stacks, and is the
	// handlers' logger (LoggerFromContext); nil means slog.Default().
	Logger *slog.Logger
	// Metrics, when set, counts attempts and durations (nil records
	// nothing).
	Metrics *Metrics
	// Catalog resolves tenants in ResolveTenant.
	Catalog storage.TenantStore
	// Reporter, when set, receives every attempt of a tenant task for fair
	// dispatch (ReportCost).
	Reporter CostReporter
	// Parker, when set, parks the tasks of suspended tenants that the fair
	// dispatcher holds (ResolveTenant).
	Parker Parker
	// DatabaseSlots bounds the tasks of one tenant database other than
	// "main" that run at once (DatabaseSlots, TENANT_DB_MAX_TASKS); 0
	// bounds nothing.
	DatabaseSlots int
	// Records, when set, are the tenants' records of archived tasks
	// (ServerOptions.Records): a tenant task that completes drops its
	// record (ForgetRecordOnSuccess).
	Records *tasks.TaskRecords
	// Redis, when set, is asynq's Redis: a task that a not-ready wait meets
	// on its last allowed attempt is put back into asynq's retry set
	// instead of being archived unrun (KeepLastAttempt).
	Redis redis.UniversalClient
	// Erased, when set, forgets what the fair dispatcher keeps of a tenant
	// whose erasure is recorded, for a task of a tenant the catalog does
	// not know (ResolveTenant); in NewServeMux it defaults to the
	// Handlers' Tenancy.
	Erased ErasedForgetter
	// Breakers, when set, hold the tasks of a database found unreachable
	// without dialing it until a probe reaches it (DatabaseBreaker,
	// DatabaseGate); nil holds nothing (each task dials).
	Breakers *DatabaseBreakers

	// lastAttemptKeep, set only by tests (export_test.go), replaces
	// KeepLastAttempt's delay bounds (45-60 s) for this chain.
	lastAttemptKeep keepDelay
}

// Chain returns the worker's middleware in production order:
// DecodeEnvelope -> ReportCost -> ForgetRecordOnSuccess -> Recover -> Log -> Metrics ->
// RefuseInvalid -> KeepLastAttempt -> DatabaseBreaker -> DatabaseUnavailable -> ResolveTenant -> DatabaseGate ->
// DatabaseSlots (see the
// package documentation). It panics without a
// catalog: a wiring mistake fails at start-up.
func Chain(opts MuxOptions) []asynq.MiddlewareFunc {
	if opts.Catalog == nil {
		panic("worker: the middleware chain needs a tenant catalog (MuxOptions.Catalog or Handlers.Catalog)")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return []asynq.MiddlewareFunc{
		DecodeEnvelope(), ReportCost(opts.Reporter), ForgetRecordOnSuccess(opts.Records, logger), Recover(logger), Log(logger), opts.Metrics.Middleware(), RefuseInvalid(),
		keepLastAttempt(opts.Redis, opts.lastAttemptKeep), DatabaseBreaker(opts.Breakers), DatabaseUnavailable(), ResolveTenant(opts.Catalog, opts.Parker, opts.Erased),
		DatabaseGate(opts.Breakers), DatabaseSlots(opts.DatabaseSlots, DefaultDatabaseSlotWait),
	}
}

// NewServeMux returns the worker's mux: every registered task type
// (tasks.Types), decoded by Handle into its payload and handled by the
// matching method of h, behind Chain(opts). Registering a type twice
// panics (asynq.ServeMux), so a wiring mistake fails at start-up.
func NewServeMux(h *Handlers, opts MuxOptions) *asynq.ServeMux {
	if opts.Catalog == nil && h.Catalog != nil {
		opts.Catalog = h.Catalog
	}
	if opts.Erased == nil && h.Tenancy != nil {
		opts.Erased = h.Tenancy
	}
	if opts.Records == nil && h.Enqueuer != nil {
		opts.Records = h.Enqueuer.TaskRecords()
	}
	return newMux(opts, h.routes()...)
}

// newMux is the production chain over routes.
func newMux(opts MuxOptions, routes ...route) *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Use(Chain(opts)...)
	for _, r := range routes {
		mux.Handle(r.typ, r.handler)
	}
	return mux
}

// route is the handler of one task type.
type route struct {
	typ     string
	handler asynq.Handler
}

// routeOf is fn's route, under its payload type's wire name.
func routeOf[P tasks.Payload](fn func(context.Context, P) error) route {
	var zero P
	return route{typ: zero.TypeName(), handler: Handle(fn)}
}

// routes are h's handlers, one per registered task type (a test checks
// both lists agree).
func (h *Handlers) routes() []route {
	return []route{
		routeOf(h.InvoicePDF),
		routeOf(h.InvoiceReminder),
		routeOf(h.InvoicesOverdue),
		routeOf(h.SweepOverdue),
		routeOf(h.SweepDocuments),
		routeOf(h.DocumentsPrune),
		routeOf(h.TenantMigrate),
		routeOf(h.TenantDestroy),
	}
}
