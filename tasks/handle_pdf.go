package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/schema"
)

// upsertDocumentSQL records the stored PDF of an invoice; a new render
// replaces the previous row.
const upsertDocumentSQL = `
INSERT INTO invoice_documents (invoice_id, storage_key, sha256, bytes, rendered_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (invoice_id) DO UPDATE
   SET storage_key = EXCLUDED.storage_key, sha256 = EXCLUDED.sha256,
       bytes = EXCLUDED.bytes, rendered_at = EXCLUDED.rendered_at`

// InvoiceDocumentKey is the document store key of an invoice's PDF within
// its tenant.
func InvoiceDocumentKey(invoiceID int64) string {
	return fmt.Sprintf("invoices/%d.pdf", invoiceID)
}

// InvoicePDF handles invoice:pdf: it loads the invoice of the tenant in ctx
// (with its customer and line items), renders it, stores the PDF under
// InvoiceDocumentKey in h.Documents and records it in invoice_documents.
// Its task result is {"storage_key","sha256","bytes"}.
//
// It is idempotent: the renderer is deterministic, so running it again
// stores the same bytes and the same SHA-256. A missing invoice archives
// the task (asynq.SkipRetry); a database or storage error is returned as is
// and retried. The invoice is read in one transaction and the document row
// written in another, so no connection is held while rendering.
func (h *Handlers) InvoicePDF(ctx context.Context, p InvoicePDF) error {
	t, err := taskTenant(ctx, p)
	if err != nil {
		return err
	}
	var inv invoiceRecord
	err = schema.InTenant(ctx, h.Pool, func(ctx context.Context, tx pgx.Tx) error {
		inv, err = loadInvoice(ctx, tx, p.InvoiceID)
		return err
	})
	if errors.Is(err, errInvoiceNotFound) {
		return invoiceNotFound(p.InvoiceID, t.ID)
	}
	if err != nil {
		return fmt.Errorf("render invoice %d: %w", p.InvoiceID, err)
	}

	var buf bytes.Buffer
	start := time.Now()
	err = pdf.Render(&buf, inv.document(t.Name))
	ObserveRender(ctx, time.Since(start))
	if errors.Is(err, pdf.ErrInvalidInvoice) {
		return Permanentf("render invoice %d of tenant %s: %w", p.InvoiceID, t.ID, err)
	}
	if err != nil {
		return fmt.Errorf("render invoice %d: %w", p.InvoiceID, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("render invoice %d: %w", p.InvoiceID, err)
	}

	info, err := h.Documents.Put(ctx, t.ID, InvoiceDocumentKey(p.InvoiceID), &buf)
	if err != nil {
		return fmt.Errorf("store pdf of invoice %d: %w", p.InvoiceID, err)
	}
	err = schema.InTenant(ctx, h.Pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, upsertDocumentSQL, p.InvoiceID, info.Key, info.SHA256, info.Bytes)
		return err
	})
	if err != nil {
		// The invoice may have been deleted since it was read: the foreign
		// key fails, and the retry archives the task as not found.
		return fmt.Errorf("record pdf of invoice %d: %w", p.InvoiceID, err)
	}
	h.log(ctx).DebugContext(ctx, "invoice rendered", slog.Int64("invoice_id", p.InvoiceID),
		slog.String("storage_key", info.Key), slog.Int64("bytes", info.Bytes), slog.String("sha256", info.SHA256))
	return writeResult(ctx, info) // {"storage_key","sha256","bytes"}
}
