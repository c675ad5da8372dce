package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// maxInt64Digits is len("9223372036854775807").
const maxInt64Digits = 19

// parseInvoiceID accepts a positive int64 written in decimal digits only:
// no sign, no exponent, no spaces, at most 19 digits.
func parseInvoiceID(s string) (int64, error) {
	if len(s) == 0 || len(s) > maxInt64Digits {
		return 0, fmt.Errorf("invoice id must be 1..%d digits", maxInt64Digits)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("invoice id must be a positive integer")
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, errors.New("invoice id must be a positive 64-bit integer")
	}
	return id, nil
}

// invoiceID parses the {id} path value, answering 400 when it is invalid.
func invoiceID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := parseInvoiceID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return 0, false
	}
	return id, true
}

// enqueuedBody answers an enqueue.
type enqueuedBody struct {
	TaskID   string `json:"task_id"`
	Queue    string `json:"queue"`
	State    string `json:"state"`
	Existing bool   `json:"existing"`
}

// enqueue runs p through the Enqueuer and answers 202 with the task.
func (h *Handler) enqueue(w http.ResponseWriter, r *http.Request, p tasks.Payload) {
	if !h.stillAuthorized(w, r) {
		return
	}
	res, err := h.opts.Enqueuer.Enqueue(r.Context(), p)
	if errors.Is(err, tasks.ErrInvalidPayload) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if backlogFull(w, err) {
		return
	}
	if err != nil {
		h.internalError(w, r, "enqueue "+p.TypeName(), err)
		return
	}
	writeJSON(w, http.StatusAccepted, enqueuedBody{
		TaskID: res.Info.ID, Queue: res.Info.Queue, State: res.Info.State.String(), Existing: res.Existing,
	})
}

// hasDatabase reports whether the handler reaches tenant schemas (tests
// of routing alone run without).
func (h *Handler) hasDatabase() bool { return h.opts.Pool != nil || h.opts.Pools != nil }

// inTenantBatch runs b in the schema of the tenant in ctx, on the database
// that holds it: one round trip (schema.InTenantBatch). At most
// Options.TenantDBConns of one tenant's units run at once; more wait for
// one of them (tenantConns), so that one tenant cannot hold every
// connection of the pool.
func (h *Handler) inTenantBatch(ctx context.Context, b *pgx.Batch) error {
	if t, ok := tenantctx.FromContext(ctx); ok { // without, placement refuses b
		release, err := h.tenantConns.acquire(ctx, t.ID)
		if err != nil {
			return err
		}
		defer release()
	}
	return placement.InTenantBatch(ctx, h.opts.Pools, h.opts.Pool, b)
}

// invoiceExists answers 404 and returns false when the tenant in the
// request's ctx has no invoice id (checked in its pinned transaction), so
// no task is enqueued for it: a task of a missing invoice would only be
// archived, and archives are shared, capped storage (P15 in
// docs/architecture.md). Without a Pool there is nothing to check.
func (h *Handler) invoiceExists(w http.ResponseWriter, r *http.Request, id int64) bool {
	if !h.hasDatabase() {
		return true
	}
	var exists bool
	var b pgx.Batch
	invoice.QueueExists(&b, id, &exists)
	switch err := h.inTenantBatch(r.Context(), &b); {
	case err != nil:
		h.internalError(w, r, "check invoice", err)
		return false
	case !exists:
		// The check may have waited (for the tenant's tables): a key
		// revoked, or a tenant suspended or deleted, meanwhile learns
		// nothing of its invoices once the change has answered.
		if h.stillAuthorized(w, r) {
			writeError(w, http.StatusNotFound, "invoice not found")
		}
		return false
	}
	return true
}

// invoicesExist is invoiceExists for a bulk request, in one query: when
// any id names no invoice of the tenant it answers 404 with the missing
// ids (at most 100 of them, and their count) and nothing is enqueued.
func (h *Handler) invoicesExist(w http.ResponseWriter, r *http.Request, ids []int64) bool {
	if !h.hasDatabase() {
		return true
	}
	var missing []int64
	var b pgx.Batch
	invoice.QueueMissing(&b, ids, &missing)
	switch err := h.inTenantBatch(r.Context(), &b); {
	case err != nil:
		h.internalError(w, r, "check invoices", err)
		return false
	case len(missing) > 0:
		// As invoiceExists: no missing ids for credentials changed
		// while the check waited.
		if !h.stillAuthorized(w, r) {
			return false
		}
		// An id named several times is one missing invoice.
		seen := make(map[int64]bool, len(missing))
		missing = slices.DeleteFunc(missing, func(id int64) bool {
			dup := seen[id]
			seen[id] = true
			return dup
		})
		named := make(map[int64]bool, len(ids))
		for _, id := range ids {
			named[id] = true
		}
		writeJSON(w, http.StatusNotFound, map[string]any{
			"error":         fmt.Sprintf("%d of %d invoices not found; nothing was enqueued", len(missing), len(named)),
			"missing":       missing[:min(len(missing), 100)],
			"missing_count": len(missing),
		})
		return false
	}
	return true
}

// enqueuePDF is POST /v1/invoices/{id}/pdf.
func (h *Handler) enqueuePDF(w http.ResponseWriter, r *http.Request) {
	id, ok := invoiceID(w, r)
	if !ok || !h.invoiceExists(w, r, id) {
		return
	}
	t := tenantctx.MustFromContext(r.Context())
	h.enqueue(w, r, tasks.InvoicePDF{TenantID: t.ID, InvoiceID: id})
}

// bulkPDFRequest is POST /v1/invoices/pdf's body.
type bulkPDFRequest struct {
	InvoiceIDs []int64 `json:"invoice_ids"`
}

// bulkTask is one invoice's task in the answer to POST /v1/invoices/pdf.
type bulkTask struct {
	InvoiceID int64  `json:"invoice_id"`
	TaskID    string `json:"task_id"`
	State     string `json:"state"`
	Existing  bool   `json:"existing"`
}

// enqueuePDFs is POST /v1/invoices/pdf {"invoice_ids":[...]}: up to
// tasks.MaxBatch renders in one request, each deduplicated per invoice as
// the single route does, admitted in one dispatcher call (all or nothing:
// past the tenant's waiting cap none is accepted and the answer is 429).
// 202 {"tasks":[{"invoice_id","task_id","state","existing"},...]} in the
// order of the ids.
func (h *Handler) enqueuePDFs(w http.ResponseWriter, r *http.Request) {
	var req bulkPDFRequest
	r, done, ok := h.decodeBody(w, r, &req)
	defer done()
	if !ok {
		return
	}
	if n := len(req.InvoiceIDs); n == 0 || n > tasks.MaxBatch {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invoice_ids must hold 1..%d ids", tasks.MaxBatch))
		return
	}
	t := tenantctx.MustFromContext(r.Context())
	payloads := make([]tasks.Payload, len(req.InvoiceIDs))
	for i, id := range req.InvoiceIDs {
		if id <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invoice_ids[%d]: must be a positive integer", i))
			return
		}
		payloads[i] = tasks.InvoicePDF{TenantID: t.ID, InvoiceID: id}
	}
	if !h.invoicesExist(w, r, req.InvoiceIDs) || !h.stillAuthorized(w, r) {
		return
	}
	res, err := h.opts.Enqueuer.EnqueueMany(r.Context(), t.ID, payloads)
	if errors.Is(err, tasks.ErrInvalidPayload) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if backlogFull(w, err) {
		return
	}
	out := make([]bulkTask, len(res))
	for i, rr := range res {
		out[i] = bulkTask{InvoiceID: req.InvoiceIDs[i], TaskID: rr.Info.ID, State: rr.Info.State.String(), Existing: rr.Existing}
	}
	switch {
	case err != nil && len(out) == 0:
		h.internalError(w, r, "enqueue invoice:pdf batch", err)
	case err != nil:
		h.partialBatch(w, r, out, len(req.InvoiceIDs), err)
	default:
		writeJSON(w, http.StatusAccepted, map[string][]bulkTask{"tasks": out})
	}
}

// partialBatch answers a batch that failed after some of its tasks were
// enqueued (one by one, without fair dispatch): 503 with Retry-After when
// a dependency is unreachable, 500 otherwise, naming the tasks enqueued
// before the error. Sending the batch again is safe: each invoice's task
// is deduplicated.
func (h *Handler) partialBatch(w http.ResponseWriter, r *http.Request, done []bulkTask, of int, err error) {
	ri := info(r.Context())
	h.log.LogAttrs(r.Context(), slog.LevelError, "http handler error", slog.String("request_id", ri.id),
		slog.String("op", "enqueue invoice:pdf batch"), slog.String("tenant_id", ri.tenantID),
		slog.Int("enqueued", len(done)), slog.Int("batch", of), slog.Any("error", err))
	status := http.StatusInternalServerError
	if dependencyUnavailable(err) {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, map[string]any{
		"error": fmt.Sprintf("enqueue failed after %d of %d tasks; sending the batch again is safe (each invoice's task is deduplicated)", len(done), of),
		"tasks": done,
	})
}

// enqueueReminder is POST /v1/invoices/{id}/reminders: one per invoice per
// day of the tenant's time zone (tenantctx.Tenant.Day; the day is part of
// the task id).
func (h *Handler) enqueueReminder(w http.ResponseWriter, r *http.Request) {
	id, ok := invoiceID(w, r)
	if !ok || !h.invoiceExists(w, r, id) {
		return
	}
	t := tenantctx.MustFromContext(r.Context())
	h.enqueue(w, r, tasks.InvoiceReminder{TenantID: t.ID, InvoiceID: id, Day: t.Day(h.opts.Now())})
}

// loadInvoiceDocument reads the document row of one invoice in the schema
// of the tenant in ctx; invoice.ErrNoDocument when there is none (or no
// invoice, or no pool).
func (h *Handler) loadInvoiceDocument(ctx context.Context, invoiceID int64) (invoice.Document, error) {
	if !h.hasDatabase() {
		return invoice.Document{}, invoice.ErrNoDocument
	}
	var doc invoice.Document
	var found bool
	var b pgx.Batch
	invoice.QueueLoadDocument(&b, invoiceID, &doc, &found)
	if err := h.inTenantBatch(ctx, &b); err != nil {
		return invoice.Document{}, err
	}
	if !found {
		return invoice.Document{}, fmt.Errorf("load document of invoice %d: %w", invoiceID, invoice.ErrNoDocument)
	}
	return doc, nil
}

// downloadPDF is GET /v1/invoices/{id}/pdf.
func (h *Handler) downloadPDF(w http.ResponseWriter, r *http.Request) {
	id, ok := invoiceID(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	t := tenantctx.MustFromContext(ctx)
	doc, err := h.loadInvoiceDocument(ctx, id)
	// The look-up may have waited (for the tenant's tables or database):
	// a key revoked, or a tenant suspended or deleted, meanwhile gets no
	// PDF once the change has answered.
	if !h.stillAuthorized(w, r) {
		return
	}
	if errors.Is(err, invoice.ErrNoDocument) {
		writeError(w, http.StatusNotFound, "invoice PDF not rendered")
		return
	}
	if err != nil {
		h.internalError(w, r, "load invoice document", err)
		return
	}
	if h.opts.Documents == nil {
		writeError(w, http.StatusNotFound, "invoice PDF not rendered")
		return
	}
	rc, di, err := h.opts.Documents.Open(ctx, t.ID, doc.StorageKey)
	if errors.Is(err, storage.ErrNotFound) {
		// Recorded but not in the store: this service's DOCUMENTS_DIR
		// is not the workers', its volume is not mounted, or the file
		// was removed. A render asked for again writes it anew where
		// the workers' store lacks it too, not where it is another
		// directory than this one's: only an operator mends that.
		h.log.WarnContext(ctx, "invoice pdf recorded but missing from the document store (is DOCUMENTS_DIR the workers'?)",
			"request_id", info(ctx).id, "tenant_id", t.ID, "invoice_id", id, "storage_key", doc.StorageKey)
		writeError(w, http.StatusNotFound, "invoice PDF not rendered")
		return
	}
	if err != nil {
		h.internalError(w, r, "open invoice document", err)
		return
	}
	defer rc.Close()
	if di.SHA256 != doc.SHA256 || di.Bytes != doc.Bytes {
		// Not the file the render recorded: a render in flight replaced
		// it (it writes the file before its row), or it was damaged in
		// the store. Only a whole PDF is served; a damaged one is
		// answered as a missing one, and a render asked for again writes
		// it anew (the worker renders when the stored file is not the
		// recorded one).
		whole, err := wholePDF(rc, di.Bytes)
		if err != nil {
			h.internalError(w, r, "check invoice document", err)
			return
		}
		if !whole {
			h.log.WarnContext(ctx, "invoice pdf in the document store is corrupt (not the recorded file, and no whole PDF): answered as not rendered; a render asked for again replaces it",
				"request_id", info(ctx).id, "tenant_id", t.ID, "invoice_id", id, "storage_key", doc.StorageKey,
				"bytes", di.Bytes, "recorded_bytes", doc.Bytes)
			writeError(w, http.StatusNotFound, "invoice PDF not rendered")
			return
		}
	}
	// The ETag is the hash of the bytes served (Open hashes what it
	// opened), not the row's: a render replaces the file before it records
	// the new row, and a download in between gets the new bytes.
	etag := `"` + di.SHA256 + `"`
	hdr := w.Header()
	// A 304 carries the ETag and Cache-Control a 200 would (RFC 9110
	// 15.4.5): a cache updates its stored copy's headers from it.
	hdr.Set("ETag", etag)
	hdr.Set("Cache-Control", "private, no-cache")
	if etagMatches(r.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Type", "application/pdf")
	hdr.Set("Content-Disposition", contentDisposition(doc.Number, id))
	hdr.Set("Content-Length", strconv.FormatInt(di.Bytes, 10))
	hdr.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		// The GET route answers HEAD too: its headers (Content-Length,
		// ETag) are all it sends, so the document is not read, and the
		// access log counts no bytes sent.
		w.WriteHeader(http.StatusOK)
		return
	}
	// The server's write timeout, counted from the request, would cut the
	// body of a large PDF part-way for a slow client, at every attempt
	// (there is no Range to resume with): the body gets time for its size.
	if err := extendWriteDeadline(w, r, di.Bytes); err != nil {
		h.log.WarnContext(ctx, "extend the write deadline of an invoice pdf", "request_id", info(ctx).id, "tenant_id", t.ID, "error", err)
	}
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		// The status is sent; all that is left is to log.
		h.log.WarnContext(ctx, "send invoice pdf", "request_id", info(ctx).id, "tenant_id", t.ID, "error", err)
	}
}

// pdfTailLen is how many of a document's last bytes wholePDF reads for
// the end-of-file marker: the marker and the white space a writer may put
// after it.
const pdfTailLen = 64

// wholePDF reports whether the document r, of size bytes, begins with a
// PDF header (%PDF-) and ends with a PDF's end-of-file marker (%%EOF,
// then only white space), reading its first and last bytes only (no
// parse): a file cut short, emptied or overwritten fails it; damage
// inside a whole-looking file does not. A reader that cannot be read at
// an offset (io.ReaderAt; the file store's can) is not checked.
func wholePDF(r io.Reader, size int64) (bool, error) {
	ra, ok := r.(io.ReaderAt)
	if !ok {
		return true, nil
	}
	const header = "%PDF-"
	if size < int64(len(header)) {
		return false, nil
	}
	head := make([]byte, len(header))
	tail := make([]byte, min(size, pdfTailLen))
	for _, part := range []struct {
		buf []byte
		off int64
	}{{head, 0}, {tail, size - int64(len(tail))}} {
		if _, err := ra.ReadAt(part.buf, part.off); errors.Is(err, io.EOF) {
			return false, nil // shorter than it was when opened
		} else if err != nil {
			return false, fmt.Errorf("read document: %w", err)
		}
	}
	return string(head) == header && bytes.HasSuffix(bytes.TrimRight(tail, "\x00\t\n\f\r "), []byte("%%EOF")), nil
}

// downloadMinRate is the slowest transfer, in bytes per second, that a
// PDF's body is given time for: 16 MiB (PDF_MAX_BYTES) in about 9 minutes.
const downloadMinRate = 32 << 10

// extendWriteDeadline gives the body of an n-byte answer to r the
// server's write timeout again, from now, plus a second per
// downloadMinRate bytes. A server without a write timeout is left so
// (a deadline set here would outlive the request on its connection).
func extendWriteDeadline(w http.ResponseWriter, r *http.Request, n int64) error {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil || srv.WriteTimeout <= 0 {
		return nil
	}
	d := srv.WriteTimeout + time.Duration(n/downloadMinRate)*time.Second
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d)); err != nil {
		return fmt.Errorf("extend write deadline: %w", err)
	}
	return nil
}

// etagMatches reports whether the If-None-Match header lines match etag
// (weak comparison, as RFC 9110 asks for If-None-Match). The header is a
// list, and a list may be split over several lines: every line counts.
func etagMatches(lines []string, etag string) bool {
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ",") {
			part = strings.TrimSpace(part)
			if part == "*" || strings.TrimPrefix(part, "W/") == etag {
				return true
			}
		}
	}
	return false
}

// maxFilenameLen bounds the download file name, in characters of the
// invoice number.
const maxFilenameLen = 100

// maxFilenameBytes bounds the download file name in UTF-8 bytes, ".pdf"
// included: file systems take 255, and a browser saving a second copy
// adds " (1)" or the like. A reminder's attachment has the same bound
// (mailer.MaxFileNameBytes, which the enqueue service does not link).
const maxFilenameBytes = 200

// contentDisposition returns the Content-Disposition of an invoice's PDF:
// "attachment" with filename, an ASCII name every client understands
// (pdfFilename), and, when the invoice number has letters outside ASCII
// ("Rechnung-Müller-7"), also filename* (RFC 6266, RFC 8187) with those
// letters kept, which current browsers prefer.
func contentDisposition(number string, id int64) string {
	ascii := pdfFilename(number, id, false)
	v := `attachment; filename="` + ascii + `"`
	if full := pdfFilename(number, id, true); full != ascii {
		v += "; filename*=UTF-8''" + percentEncode(full)
	}
	return v
}

// pdfFilename returns "<number>.pdf" with every character outside
// [A-Za-z0-9._-] replaced by '_', so the Content-Disposition header cannot
// be broken out of (quotes, CR/LF, slashes); an empty result falls back to
// "invoice-<id>.pdf". The name keeps at most maxFilenameLen characters of
// the number and maxFilenameBytes bytes in all. With unicode, letters, digits and combining marks of
// any script are kept too (format characters such as bidi overrides are
// not: they could disguise the name's extension).
func pdfFilename(number string, id int64, unicodeLetters bool) string {
	var b strings.Builder
	n := 0
	for _, c := range number {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.' && b.Len() > 0:
		case unicodeLetters && c > unicode.MaxASCII && c != utf8.RuneError &&
			(unicode.IsLetter(c) || unicode.IsDigit(c) || unicode.IsMark(c) && b.Len() > 0):
		default:
			c = '_'
		}
		if n >= maxFilenameLen || b.Len()+utf8.RuneLen(c)+len(".pdf") > maxFilenameBytes {
			break
		}
		n++
		b.WriteRune(c)
	}
	name := strings.Trim(b.String(), "_.")
	if name == "" {
		name = "invoice-" + strconv.FormatInt(id, 10)
	}
	return name + ".pdf"
}

// percentEncode encodes s for an RFC 8187 ext-value: the bytes of
// [A-Za-z0-9._-] stay as they are, every other byte becomes %XX.
func percentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
