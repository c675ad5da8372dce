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
	"github.com/invoicing/tenantworker/storage"
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
// and retried. The invoice is read in one transaction and the document
// stored and recorded in another, so no connection is held while rendering.
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
	_, err = pdf.Render(ctx, &buf, inv.document(t.Name))
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

	// Store and record under the tenant's shared lock: a tenant:destroy
	// (schema.Drop) waits for this write and then removes the file with the
	// tenant's documents; one that came first leaves no tables, and the
	// check below fails before a file is written.
	var info storage.DocumentInfo
	err = schema.InTenant(ctx, h.Pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := schema.LockShared(ctx, tx); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM invoices WHERE id = $1)`, p.InvoiceID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return errInvoiceNotFound
		}
		var err error
		info, err = h.Documents.Put(ctx, t.ID, InvoiceDocumentKey(p.InvoiceID), &buf)
		if err != nil {
			return fmt.Errorf("store pdf: %w", err)
		}
		_, err = tx.Exec(ctx, upsertDocumentSQL, p.InvoiceID, info.Key, info.SHA256, info.Bytes)
		return err
	})
	if errors.Is(err, errInvoiceNotFound) {
		return invoiceNotFound(p.InvoiceID, t.ID)
	}
	if err != nil {
		return fmt.Errorf("record pdf of invoice %d: %w", p.InvoiceID, err)
	}
	h.log(ctx).DebugContext(ctx, "invoice rendered", slog.Int64("invoice_id", p.InvoiceID),
		slog.String("storage_key", info.Key), slog.Int64("bytes", info.Bytes), slog.String("sha256", info.SHA256))
	return writeResult(ctx, info) // {"storage_key","sha256","bytes"}
}
