package tasks

import (
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/storage"
)

// MuxOptions configures NewServeMux. The zero value is usable.
type MuxOptions struct {
	// Logger receives the task log lines and panic stacks; nil means
	// h.Logger, then slog.Default().
	Logger *slog.Logger
	// Metrics, when set, counts attempts and durations (nil records
	// nothing).
	Metrics *Metrics
	// Catalog resolves tenants in the Tenant middleware; nil means
	// h.Catalog.
	Catalog storage.TenantStore
}

// NewServeMux returns the worker's mux: the six task types, each decoded by
// Handle into its payload and handled by the matching method of h, behind
// the middleware chain Recover -> Log -> Metrics -> KnownTypes -> Tenant. Registering a
// type twice panics (asynq.ServeMux), so a wiring mistake fails at start-up.
func NewServeMux(h *Handlers, opts MuxOptions) *asynq.ServeMux {
	logger := opts.Logger
	if logger == nil {
		logger = h.Logger
	}
	if logger == nil {
		logger = slog.Default()
	}
	var catalog storage.TenantStore = h.Catalog
	if opts.Catalog != nil {
		catalog = opts.Catalog
	}
	if catalog == nil {
		panic("tasks: NewServeMux needs a tenant catalog (Handlers.Catalog or MuxOptions.Catalog)")
	}
	mux := asynq.NewServeMux()
	mux.Use(Recover(logger), Log(logger), opts.Metrics.Middleware(),
		KnownTypes(TypeInvoicePDF, TypeInvoiceReminder, TypeInvoicesOverdue, TypeSweepOverdue, TypeTenantMigrate, TypeTenantDestroy),
		Tenant(catalog))
	mux.Handle(TypeInvoicePDF, Handle(h.InvoicePDF))
	mux.Handle(TypeInvoiceReminder, Handle(h.InvoiceReminder))
	mux.Handle(TypeInvoicesOverdue, Handle(h.InvoicesOverdue))
	mux.Handle(TypeSweepOverdue, Handle(h.SweepOverdue))
	mux.Handle(TypeTenantMigrate, Handle(h.TenantMigrate))
	mux.Handle(TypeTenantDestroy, Handle(h.TenantDestroy))
	return mux
}
