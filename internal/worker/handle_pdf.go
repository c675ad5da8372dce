package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// pdfResult is the task result of invoice:pdf.
type pdfResult struct {
	storage.DocumentInfo // storage_key, sha256, bytes
	// FontPath is the renderer's font path of the stored document.
	FontPath string `json:"font_path"`
	// Unchanged reports that the stored document was kept: the invoice
	// (and the renderer) had not changed since it was rendered.
	Unchanged bool `json:"unchanged"`
	// AmountDiffers reports that the document shows another total than
	// the invoice's stored amount: the amount is not the sum of its lines
	// (as its numeric(12,2) column holds that sum: rounded to 2 decimals),
	// and the document shows the lines' sum; or, without lines, the amount
	// has more decimals than its currency's minor units (JPY 1234.50), and
	// the document shows it rounded to them (JPY 1,235).
	AmountDiffers bool `json:"amount_differs,omitempty"`
	// MissingGlyphs lists ("U+4E2D") the first characters of the invoice
	// the fonts have no glyph for, which the document prints as empty
	// boxes, or as U+FFFD for those outside the Basic Multilingual Plane
	// (pdf.Result.Missing); MissingGlyphCount counts them all. Only the
	// render that wrote the document reports them.
	MissingGlyphs     []string `json:"missing_glyphs,omitempty"`
	MissingGlyphCount int      `json:"missing_glyph_count,omitempty"`
}

// InvoicePDF handles invoice:pdf: it renders the invoice of the tenant in
// ctx (with its customer and line items), stores the PDF under
// invoice.DocumentKey in h.Documents and records it in invoice_documents.
// Its task result is {"storage_key","sha256","bytes","font_path",
// "unchanged"} (and "amount_differs" when true, "missing_glyphs" and
// "missing_glyph_count" when the fonts lack characters of the invoice:
// the document then prints those as empty boxes, or as U+FFFD, and a
// warning says so).
//
// One transaction, two round trips (schema.InTenantBatchesReadCommitted:
// at read committed whatever the database's
// default_transaction_isolation): the first
// takes the tenant's shared lock (in the pin's statement, with the plan
// setting) and the invoice's render lock (invoice.QueueLockRender: two
// renders of one invoice run one after the other, the later one loading
// the invoice after the earlier one committed, which a snapshot taken
// before the wait, at repeatable read or serializable, would not see), and
// loads the invoice, its lines and its
// current document in one query (written for the tenant's schema and run
// with its generic plan, so that a connection plans it once per tenant,
// not once per task: invoice.QueueLoadFor, schema.QueueGenericPlans; the
// record too); the PDF is rendered and written to the
// store while the transaction stays open; the second records the document
// and commits. Holding the shared lock from before the load until the
// commit keeps docs/architecture.md's I13: a tenant:destroy (schema.Drop)
// waits for this task, then removes its file with the tenant's documents;
// a destroy that came first leaves no tables, so the load fails before a
// file is written. The connection is held while rendering (about a
// millisecond for a 10-line invoice on the single-byte font paths, bounded
// by the line and page limits and the task's deadline, which the renderer
// checks as it reads the invoice's text and between pages).
//
// An invoice whose render inputs (pdf.InputsHash: the invoice, its issue
// date as the tenant's time zone dates it, the tenant's name, the
// renderer's layout version) equal those recorded with
// its stored document, and whose file is still in the store with its
// recorded size and SHA-256 (read back: Handlers.stored), is not rendered again: the task completes with the stored
// document and says so ("unchanged": true).
//
// Money: the document prints the lines' sum as the total; an invoice
// without lines prints its stored amount, in its currency's minor units.
// When the stored amount differs from the lines' sum, or an invoice
// without lines has an amount finer than its currency (a yen amount with
// a fraction, printed rounded), a warning names the tenant and the
// invoice and the result says "amount_differs" (docs/architecture.md,
// "Tenant tables").
//
// An invoice deleted while it was rendered (the record finds no row)
// leaves no file behind: the one written is removed, and the task is
// archived as not found.
//
// It is idempotent: the renderer is deterministic. A missing invoice, an
// invoice whose stored values cannot be used (invoice.ErrInvalidData: a
// NaN amount), an invoice the renderer refuses (over PDFMaxLines or
// PDFMaxLineBytes, a document over
// PDFMaxPages or PDFMaxBytes, an invalid currency) archive the task with the reason
// (asynq.SkipRetry); a database or storage error, or the task's deadline,
// is returned as is and retried.
func (h *Handlers) InvoicePDF(ctx context.Context, p tasks.InvoicePDF) error {
	t, err := taskTenant(ctx, p)
	if err != nil {
		return err
	}
	pool, err := h.tenantPool(ctx, t)
	if err != nil {
		return err
	}
	r := pdf.Renderer{MaxLines: h.PDFMaxLines, MaxLineBytes: h.PDFMaxLineBytes, MaxBytes: h.PDFMaxBytes, MaxPages: h.PDFMaxPages}
	key := invoice.DocumentKey(p.InvoiceID)
	first := &pgx.Batch{}
	if err := schema.QueueLockShared(ctx, first); err != nil {
		return err
	}
	schema.QueueGenericPlans(first)
	if err := invoice.QueueLockRender(first, t.Schema, p.InvoiceID); err != nil {
		return Permanent(err) // QueueLockShared validated the schema: not reached
	}
	var inv invoice.Invoice
	// An invoice over the line limit, or whose descriptions add up to
	// more bytes than their limit, loads without its lines (their count
	// and size say), which may add up to more than the database's 1 GB
	// array limit or a worker's memory.
	if err := invoice.QueueLoadForAtMost(first, t.Schema, p.InvoiceID, r.MaxLinesOrDefault(), r.MaxLineBytesOrDefault(), &inv); err != nil {
		return Permanent(err) // QueueLockShared validated the schema: not reached
	}
	var res pdfResult
	err = schema.InTenantBatchesReadCommitted(ctx, pool, first, func(ctx context.Context) (*pgx.Batch, error) {
		if err := r.CheckLines(inv.Number, inv.LineCount); err != nil {
			return nil, Permanentf("render invoice %d of tenant %s: %w", p.InvoiceID, t.ID, err)
		}
		if err := r.CheckLineBytes(inv.Number, inv.LineBytes); err != nil {
			return nil, Permanentf("render invoice %d of tenant %s: %w", p.InvoiceID, t.ID, err)
		}
		doc := document(inv, t)
		if len(inv.Lines) > 0 {
			// The amount column (numeric(12,2)) holds the lines' sum
			// rounded to 2 decimals: a currency with 3 or 4 minor units
			// (KWD, CLF) keeps the rest only in the lines.
			if sum := pdf.Subtotal(doc); !sum.Round(amountScale).Equal(inv.Amount) {
				res.AmountDiffers = true
				LoggerFromContext(ctx).WarnContext(ctx, "invoice amount differs from the sum of its lines; the document shows the lines' sum",
					slog.Int64("invoice_id", p.InvoiceID),
					slog.String("amount", inv.Amount.String()), slog.String("lines_total", sum.String()))
			}
		} else if printed := inv.Amount.Round(pdf.MinorUnits(doc.Currency)); !printed.Equal(inv.Amount) {
			// Without lines the document prints the stored amount in the
			// currency's minor units: a yen amount with a fraction
			// (1234.50, which the column takes) prints rounded (JPY 1,235).
			res.AmountDiffers = true
			LoggerFromContext(ctx).WarnContext(ctx, "invoice amount has more decimals than its currency; the document shows it rounded",
				slog.Int64("invoice_id", p.InvoiceID), slog.String("currency", doc.Currency),
				slog.String("amount", inv.Amount.String()), slog.String("printed", printed.String()))
		}
		inputs := pdf.InputsHash(r, doc)
		if stored := inv.Document; stored.InputsSHA256 == inputs && stored.StorageKey == key && h.stored(ctx, t.ID, stored) {
			res.DocumentInfo = storage.DocumentInfo{Key: stored.StorageKey, SHA256: stored.SHA256, Bytes: stored.Bytes}
			res.FontPath, res.Unchanged = stored.FontPath, true
			return nil, nil // nothing to write: COMMIT
		}

		buf := renderBuffers.Get().(*bytes.Buffer)
		defer func() {
			if buf.Cap() <= maxPooledRenderBuffer {
				buf.Reset()
				renderBuffers.Put(buf)
			}
		}()
		if h.beforeRender != nil {
			h.beforeRender(ctx)
		}
		start := time.Now()
		out, err := r.Render(ctx, buf, doc)
		ObserveRender(ctx, time.Since(start))
		if errors.Is(err, pdf.ErrInvalidInvoice) { // ErrTooLarge included
			return nil, Permanentf("render invoice %d of tenant %s: %w", p.InvoiceID, t.ID, err)
		}
		if err != nil {
			return nil, fmt.Errorf("render invoice %d: %w", p.InvoiceID, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("render invoice %d: %w", p.InvoiceID, err)
		}
		info, err := h.Documents.Put(ctx, t.ID, key, buf)
		if err != nil {
			return nil, fmt.Errorf("store pdf: %w", err)
		}
		res.DocumentInfo, res.FontPath = info, string(out.FontPath)
		if out.MissingCount > 0 {
			res.MissingGlyphCount = out.MissingCount
			for _, r := range out.Missing {
				res.MissingGlyphs = append(res.MissingGlyphs, fmt.Sprintf("%U", r))
			}
			LoggerFromContext(ctx).WarnContext(ctx, "invoice has characters the PDF fonts lack; the document prints them as empty boxes",
				slog.Int64("invoice_id", p.InvoiceID),
				slog.Int("missing_glyphs", out.MissingCount), slog.String("first", strings.Join(res.MissingGlyphs, " ")))
		}
		last := &pgx.Batch{}
		err = invoice.QueueRecordDocumentFor(last, t.Schema, invoice.Document{
			InvoiceID: p.InvoiceID, StorageKey: info.Key, SHA256: info.SHA256, Bytes: info.Bytes,
			InputsSHA256: inputs, FontPath: res.FontPath,
		})
		return last, err
	})
	if errors.Is(err, invoice.ErrNotFound) {
		if res.DocumentInfo.Key != "" && !res.Unchanged {
			// Deleted while it was rendered: the record found no invoice,
			// and the file written for it would stay behind, unreferenced.
			h.deleteDocument(ctx, t.ID, key)
		}
		return invoiceNotFound(p.InvoiceID, t.ID)
	}
	if errors.Is(err, invoice.ErrInvalidData) {
		return Permanentf("render invoice %d of tenant %s: %w", p.InvoiceID, t.ID, err)
	}
	if err != nil {
		if IsPermanent(err) {
			return err
		}
		return fmt.Errorf("render invoice %d: %w", p.InvoiceID, err)
	}
	if res.Unchanged {
		ObservePDF(ctx, "")
	} else {
		ObservePDF(ctx, res.FontPath)
	}
	LoggerFromContext(ctx).DebugContext(ctx, "invoice rendered", slog.Int64("invoice_id", p.InvoiceID),
		slog.String("storage_key", res.Key), slog.Int64("bytes", res.Bytes), slog.String("sha256", res.SHA256),
		slog.String("font_path", res.FontPath), slog.Bool("unchanged", res.Unchanged))
	return writeResult(ctx, res)
}

// amountScale is the scale of invoices.amount (numeric(12,2)).
const amountScale = 2

// renderBuffers recycles the buffers PDFs are rendered into (tens of KiB
// each for a typical invoice).
var renderBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledRenderBuffer is the largest buffer kept for reuse: the buffer
// of a rare large document goes to the garbage collector.
const maxPooledRenderBuffer = 1 << 20

// stored reports whether the store holds the very document d records: its
// content hashes to d's SHA-256. The size alone is not enough: a render
// whose unit of work failed after its file was written (a deadline, the
// database, a kill between the write and the commit) leaves another
// version of the invoice under the key beside the earlier version's row,
// and an edit undone since would make that row's inputs match again. Any
// doubt (the file missing or unreadable) says no: the invoice is then
// rendered again, which is always safe. It reads the document once
// (tens of KiB; the store hashes it as it opens it).
func (h *Handlers) stored(ctx context.Context, tenantID string, d invoice.Document) bool {
	f, info, err := h.Documents.Open(ctx, tenantID, d.StorageKey)
	if err != nil {
		return false
	}
	_ = f.Close()
	return info.Bytes == d.Bytes && info.SHA256 == d.SHA256
}

// documentDeleter is a document store that can delete one document
// (storage.FS).
type documentDeleter interface {
	Delete(ctx context.Context, tenantID, key string) error
}

// deleteDocument removes the document under key; a failure is logged (the
// file then stays until its tenant's documents are deleted).
func (h *Handlers) deleteDocument(ctx context.Context, tenantID, key string) {
	d, ok := h.Documents.(documentDeleter)
	if !ok {
		return
	}
	if err := d.Delete(context.WithoutCancel(ctx), tenantID, key); err != nil {
		LoggerFromContext(ctx).WarnContext(ctx, "remove the document of a deleted invoice",
			slog.String("storage_key", key), slog.String("error", err.Error()))
	}
}

// document returns inv as the pdf package's Invoice, issued by tenant t.
// Its dates never depend on the worker's time zone, so every worker renders
// the same bytes: the issue date (issued_at, the instant the invoice was
// made) is in t's time zone (tenantctx.Tenant.Location), so that it prints
// as the tenant's calendar date then, the day reminders count by; the due
// date, a date the app stores as its midnight UTC, is in UTC, and a missing
// one stays zero (printed as "-"). The stored amount goes with it: the
// renderer prints it for an invoice without lines.
func document(inv invoice.Invoice, t tenantctx.Tenant) pdf.Invoice {
	lines := make([]pdf.Line, len(inv.Lines))
	for i, l := range inv.Lines {
		lines[i] = pdf.Line{Description: l.Description, Quantity: l.Quantity, UnitPrice: l.UnitPrice}
	}
	c := inv.Customer
	doc := pdf.Invoice{
		TenantName: t.Name,
		Number:     inv.Number,
		IssuedAt:   inv.IssuedAt.In(t.Location()),
		Status:     inv.Status,
		Currency:   inv.Currency,
		Customer:   pdf.Customer{Name: c.Name, Company: c.Company, Email: c.Email, Address: c.Address},
		Lines:      lines,
		Notes:      inv.Notes,
	}
	doc.Amount.Decimal, doc.Amount.Valid = inv.Amount, true
	if !inv.DueAt.IsZero() {
		doc.DueAt = inv.DueAt.UTC()
	}
	return doc
}

// invoiceNotFound is the permanent error of a task whose invoice does not
// exist: retrying cannot make it appear.
func invoiceNotFound(id int64, tenantID string) error {
	return Permanentf("invoice %d not found in tenant %s: %w", id, tenantID, invoice.ErrNotFound)
}
