package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/tasks"
)

// documentsSweepResult is the task result of sweep:documents.
type documentsSweepResult struct {
	// Tenants counts the tenants looked at, Failed those whose documents
	// could not be checked (logged; the next tick takes them again).
	Tenants int `json:"tenants"`
	Failed  int `json:"failed"`
	// Checked, Removed and Busy add up tenancy.DocumentsPruned's, those
	// of a failed tenant included (what its batches before the failure
	// removed is gone).
	Checked int `json:"checked"`
	Removed int `json:"removed"`
	Busy    int `json:"busy"`
}

// SweepDocuments handles sweep:documents, a system task without a tenant:
// for every tenant, one at a time, it removes from the document store the
// PDFs that no invoice_documents row records, those of invoices deleted
// after their render (tenancy.Service.PruneAllDocuments, which leaves a
// document being rendered or recorded). A tenant whose documents cannot be
// checked (its database down, moved meanwhile) is logged with its
// tenant_id and counted as failed (what its batches removed before the
// failure is logged and counted too), and the sweep goes on with the others;
// the next tick takes it again. The task fails, and is retried, when the
// tenants cannot be listed or it runs past its timeout (each run starts
// again from the first tenant). Its result is {"tenants","failed",
// "checked","removed","busy"}.
func (h *Handlers) SweepDocuments(ctx context.Context, p tasks.SweepDocuments) error {
	if h.Tenancy == nil {
		return errors.New("sweep:documents: no tenancy service configured")
	}
	log := LoggerFromContext(ctx)
	var res documentsSweepResult
	err := h.Tenancy.PruneAllDocuments(ctx, func(r tenancy.DocumentsPruned, err error) error {
		res.Tenants++
		if err != nil && ctx.Err() != nil {
			return err
		}
		// A tenant that failed after a batch may have had documents
		// removed already: they are counted all the same.
		res.Checked += r.Checked
		res.Removed += r.Removed
		res.Busy += r.Busy
		if err != nil {
			res.Failed++
			log.WarnContext(ctx, "documents sweep: a tenant's documents not checked", slog.String("tenant_id", r.TenantID),
				slog.Int("removed", r.Removed), slog.String("error", err.Error()))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sweep documents (tick %d): %w", p.Tick, err)
	}
	log.InfoContext(ctx, "documents sweep done", slog.Int64("tick", p.Tick), slog.Int("tenants", res.Tenants),
		slog.Int("failed", res.Failed), slog.Int("checked", res.Checked), slog.Int("removed", res.Removed), slog.Int("busy", res.Busy))
	return writeResult(ctx, res)
}
