package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// InvoicePDF handles invoice:pdf: it loads the invoice of the tenant in ctx
// (with its customer and line items), renders it, stores the PDF under
// invoice.DocumentKey in h.Documents and records it in invoice_documents.
// Its task result is {"storage_key","sha256","bytes"}.
//
// It is idempotent: the renderer is deterministic, so running it again
// stores the same bytes and the same SHA-256. A missing invoice archives
// the task (asynq.SkipRetry); a database or storage error is returned as is
// and retried. The invoice is read in one transaction and the document
// stored and recorded in another, so no connection is held while rendering.
func (h *Handlers) InvoicePDF(ctx context.Context, p tasks.InvoicePDF) error {
	t, err := taskTenant(ctx, p)
	if err != nil {
		return err
	}
	pool, err := h.tenantPool(ctx, t)
	if err != nil {
		return err
	}
	var inv invoice.Invoice
	err = schema.InTenant(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		inv, err = invoice.Load(ctx, tx, p.InvoiceID)
		return err
	})
	if errors.Is(err, invoice.ErrNotFound) {
		return invoiceNotFound(p.InvoiceID, t.ID)
	}
	if err != nil {
		return fmt.Errorf("render invoice %d: %w", p.InvoiceID, err)
	}

	var buf bytes.Buffer
	start := time.Now()
	_, err = pdf.Render(ctx, &buf, document(inv, t.Name))
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
	err = schema.InTenant(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := schema.LockShared(ctx, tx); err != nil {
			return err
		}
		exists, err := invoice.Exists(ctx, tx, p.InvoiceID)
		if err != nil {
			return err
		}
		if !exists {
			return invoice.ErrNotFound
		}
		info, err = h.Documents.Put(ctx, t.ID, invoice.DocumentKey(p.InvoiceID), &buf)
		if err != nil {
			return fmt.Errorf("store pdf: %w", err)
		}
		return invoice.RecordDocument(ctx, tx, invoice.Document{
			InvoiceID: p.InvoiceID, StorageKey: info.Key, SHA256: info.SHA256, Bytes: info.Bytes,
		})
	})
	if errors.Is(err, invoice.ErrNotFound) {
		return invoiceNotFound(p.InvoiceID, t.ID)
	}
	if err != nil {
		return fmt.Errorf("record pdf of invoice %d: %w", p.InvoiceID, err)
	}
	LoggerFromContext(ctx).DebugContext(ctx, "invoice rendered", slog.Int64("invoice_id", p.InvoiceID),
		slog.String("storage_key", info.Key), slog.Int64("bytes", info.Bytes), slog.String("sha256", info.SHA256))
	return writeResult(ctx, info) // {"storage_key","sha256","bytes"}
}

// document returns inv as the pdf package's Invoice, issued by tenantName.
// Dates are in UTC so that every worker renders the same bytes whatever its
// time zone.
func document(inv invoice.Invoice, tenantName string) pdf.Invoice {
	lines := make([]pdf.Line, len(inv.Lines))
	for i, l := range inv.Lines {
		lines[i] = pdf.Line{Description: l.Description, Quantity: l.Quantity, UnitPrice: l.UnitPrice}
	}
	c := inv.Customer
	return pdf.Invoice{
		TenantName: tenantName,
		Number:     inv.Number,
		IssuedAt:   inv.IssuedAt.UTC(),
		DueAt:      inv.DueAt.UTC(),
		Status:     inv.Status,
		Currency:   inv.Currency,
		Customer:   pdf.Customer{Name: c.Name, Company: c.Company, Email: c.Email, Address: c.Address},
		Lines:      lines,
		Notes:      inv.Notes,
	}
}

// invoiceNotFound is the permanent error of a task whose invoice does not
// exist: retrying cannot make it appear.
func invoiceNotFound(id int64, tenantID string) error {
	return Permanentf("invoice %d not found in tenant %s", id, tenantID)
}
