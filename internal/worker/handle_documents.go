package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// SweepDocuments handles sweep:documents, a system task without a tenant:
// it enqueues one documents:prune per tenant whose status lets ordinary
// work run, as SweepOverdue does invoices:overdue (sweep), so each
// tenant's prune is admitted fairly beside its other work, and one whose
// database hangs retries alone while the others are pruned. Its task
// result is {"tenants","enqueued","existing"} and "skipped" when some
// were.
func (h *Handlers) SweepDocuments(ctx context.Context, p tasks.SweepDocuments) error {
	return h.sweep(ctx, "documents", p.Tick, func(tenantID string) tasks.Payload {
		return tasks.DocumentsPrune{TenantID: tenantID, Tick: p.Tick}
	})
}

// documentsPruneResult is the task result of documents:prune.
type documentsPruneResult struct {
	// Checked, Removed, Busy and Skipped are tenancy.DocumentsPruned's.
	Checked int    `json:"checked"`
	Removed int    `json:"removed"`
	Busy    int    `json:"busy"`
	Skipped string `json:"skipped,omitempty"`
}

// DocumentsPrune handles documents:prune for the tenant in ctx: it removes
// from the document store the PDFs that no invoice_documents row records,
// those of invoices deleted after their render
// (tenancy.Service.PruneDocuments, which leaves a document being rendered
// or recorded). A tenant erased since the task was enqueued has nothing
// left to prune: the task completes, skipped (with what batches before
// the erasure removed). Any other failure (its
// database down, moved meanwhile) fails the attempt, which is retried;
// the error says how many documents the batches before it removed, which
// stay removed. Its result is {"checked","removed","busy"} and "skipped"
// when the tenant was not pruned (being provisioned or deleted).
func (h *Handlers) DocumentsPrune(ctx context.Context, p tasks.DocumentsPrune) error {
	t, err := taskTenant(ctx, p)
	if err != nil {
		return err
	}
	if h.Tenancy == nil {
		return errors.New("documents:prune: no tenancy service configured")
	}
	log := LoggerFromContext(ctx)
	r, err := h.Tenancy.PruneDocuments(ctx, t.ID)
	if errors.Is(err, storage.ErrNotFound) && !errors.Is(err, placement.ErrUnknownDatabase) {
		// Erased since: its documents went with it. Not a tenant on a
		// database this process cannot reach (that error wraps
		// storage.ErrNotFound too): that one is retried. What batches
		// before the erasure removed is counted all the same.
		log.InfoContext(ctx, "documents prune skipped a tenant erased since it was enqueued", slog.Int("removed", r.Removed))
		return writeResult(ctx, documentsPruneResult{Checked: r.Checked, Removed: r.Removed, Busy: r.Busy, Skipped: "erased"})
	}
	if err != nil {
		return fmt.Errorf("prune documents of tenant %s (%d removed before the error): %w", t.ID, r.Removed, err)
	}
	log.InfoContext(ctx, "documents pruned", slog.Int("checked", r.Checked), slog.Int("removed", r.Removed),
		slog.Int("busy", r.Busy), slog.String("skipped", r.Skipped))
	return writeResult(ctx, documentsPruneResult{Checked: r.Checked, Removed: r.Removed, Busy: r.Busy, Skipped: r.Skipped})
}
