package worker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/pdf"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// acmeCustomer and acmeInvoice are a typical invoice: fractional
// quantity, a discount line, a total that needs thousands grouping.
var (
	acmeCustomer = invoice.Customer{Name: "Zoë Müller", Company: "Müller Maschinenbau GmbH",
		Email: "zoe@mueller.example", Address: "Hauptstraße 5\n80331 München"}
	acmeInvoice = invoice.New{
		Number: "ACME-2026-0001", Status: "sent", Currency: "EUR",
		IssuedAt: time.Date(2026, 1, 5, 9, 30, 0, 0, time.UTC),
		DueAt:    time.Date(2026, 2, 4, 0, 0, 0, 0, time.UTC),
		Notes:    "Payable within 30 days.",
		Lines: []invoice.Line{
			line("Consulting, January", "12.5", "96.00"), // 1,200.00
			line("Travel expenses", "1", "171.75"),       //   171.75
			line("Loyalty discount", "1", "-50.00"),      //   -50.00
			line("Support hours", "0.333", "30.00"),      //     9.99
		},
	}
	acmeTotal = "EUR 1,331.74"
)

func TestInvoicePDFRendersStoresAndRecords(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme Invoicing Ltd")
	id := e.addInvoice(t, acme, acmeCustomer, acmeInvoice)

	if err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
		t.Fatalf("InvoicePDF: %v", err)
	}
	row, ok := e.documentRow(t, acme, id)
	if !ok {
		t.Fatal("no invoice_documents row after rendering")
	}
	if want := invoice.DocumentKey(id); row.StorageKey != want {
		t.Errorf("storage_key = %q, want %q", row.StorageKey, want)
	}
	doc := e.readDocument(t, acme, row.StorageKey)
	sum := sha256.Sum256(doc)
	if got := hex.EncodeToString(sum[:]); row.SHA256 != got || row.Bytes != int64(len(doc)) {
		t.Errorf("row says sha256 %s, %d bytes; stored document has %s, %d bytes", row.SHA256, row.Bytes, got, len(doc))
	}
	text := pdfToText(t, doc)
	for _, want := range []string{"Acme Invoicing Ltd", acmeInvoice.Number, acmeCustomer.Name, acmeCustomer.Company,
		"Consulting, January", "Travel expenses", "Loyalty discount", "Support hours", acmeTotal, "2026-02-04"} {
		if !strings.Contains(text, want) {
			t.Errorf("PDF text lacks %q:\n%s", want, text)
		}
	}

	// Run again with nothing changed: the stored document is kept, not
	// rendered again, and the result says so.
	time.Sleep(10 * time.Millisecond)
	result := e.workResult(t, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id})
	if !result.Unchanged || result.SHA256 != row.SHA256 || result.Bytes != row.Bytes || result.Key != row.StorageKey || result.FontPath != "cp1252" {
		t.Errorf("second run's result %+v, want the stored document, unchanged, font path cp1252", result)
	}
	row2, _ := e.documentRow(t, acme, id)
	if row2 != row {
		t.Errorf("an unchanged invoice's document row changed: %+v, was %+v", row2, row)
	}

	// A changed invoice is rendered again.
	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE invoices SET notes = 'Payable within 14 days.' WHERE id = $1", id)
		return err
	})
	result = e.workResult(t, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id})
	row3, _ := e.documentRow(t, acme, id)
	if result.Unchanged || row3.SHA256 == row.SHA256 || result.SHA256 != row3.SHA256 || !row3.RenderedAt.After(row.RenderedAt) {
		t.Errorf("changed invoice: result %+v, row %+v (was %+v); want a new render", result, row3, row)
	}
	if text := pdfToText(t, e.readDocument(t, acme, row3.StorageKey)); !strings.Contains(text, "Payable within 14 days.") {
		t.Errorf("re-rendered PDF lacks the new notes:\n%s", text)
	}

	// A document missing from the store is rendered again.
	if err := e.docs.DeleteTenant(e.ctx, acme.ID); err != nil {
		t.Fatal(err)
	}
	if result = e.workResult(t, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); result.Unchanged || result.SHA256 != row3.SHA256 {
		t.Errorf("after the file was lost: %+v, want the same document rendered again", result)
	}
	e.readDocument(t, acme, row3.StorageKey)
}

func TestInvoicePDFSameIDInTwoTenants(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	a := e.provision(t, "alpha", "Alpha Tools")
	b := e.provision(t, "bravo", "Bravo Foods")
	idA := e.addInvoice(t, a, invoice.Customer{Name: "Ada Lovelace", Email: "ada@example.org"}, invoice.New{
		Number: "A-0001", Status: "sent", Currency: "GBP", IssuedAt: time.Now(), DueAt: time.Now(),
		Lines: []invoice.Line{line("Analytical engine", "2", "1000.00")},
	})
	idB := e.addInvoice(t, b, invoice.Customer{Name: "Grace Hopper", Email: "grace@example.org"}, invoice.New{
		Number: "B-0001", Status: "sent", Currency: "JPY", IssuedAt: time.Now(), DueAt: time.Now(),
		Lines: []invoice.Line{line("Compiler", "3", "12345")},
	})
	if idA != 1 || idB != 1 {
		t.Fatalf("invoice ids %d and %d, want 1 in both tenants", idA, idB)
	}
	for _, tn := range []tenantctx.Tenant{a, b} {
		if err := e.work(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}); err != nil {
			t.Fatalf("InvoicePDF for %s: %v", tn.Slug, err)
		}
	}
	textA := pdfToText(t, e.readDocument(t, a, invoice.DocumentKey(1)))
	textB := pdfToText(t, e.readDocument(t, b, invoice.DocumentKey(1)))
	for _, tt := range []struct {
		text          string
		want, notWant []string
	}{
		{textA, []string{"Alpha Tools", "A-0001", "Ada Lovelace", "Analytical engine", "GBP 2,000.00"},
			[]string{"Bravo", "B-0001", "Grace Hopper", "Compiler"}},
		{textB, []string{"Bravo Foods", "B-0001", "Grace Hopper", "Compiler", "JPY 37,035"},
			[]string{"Alpha", "A-0001", "Ada Lovelace", "Analytical"}},
	} {
		for _, w := range tt.want {
			if !strings.Contains(tt.text, w) {
				t.Errorf("PDF lacks %q:\n%s", w, tt.text)
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(tt.text, w) {
				t.Errorf("PDF shows the other tenant's %q:\n%s", w, tt.text)
			}
		}
	}
}

func TestInvoicePDFMissingInvoiceIsPermanent(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: 999})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("InvoicePDF of a missing invoice = %v, want asynq.SkipRetry", err)
	}
	if want := "invoice 999 not found in tenant " + acme.ID; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
	if _, _, err := e.docs.Open(e.ctx, acme.ID, invoice.DocumentKey(999)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("document of a missing invoice: %v, want ErrNotFound", err)
	}
}

// TestInvoicePDFRefusesWrongTenantContext calls the handler past the chain
// on purpose: a handler wired without ResolveTenant, or handed another
// tenant, refuses to run.
func TestInvoicePDFRefusesWrongTenantContext(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	a := e.provision(t, "alpha", "Alpha")
	b := e.provision(t, "bravo", "Bravo")
	e.addInvoice(t, a, acmeCustomer, acmeInvoice)
	for name, err := range map[string]error{
		"no tenant":    e.h.InvoicePDF(e.ctx, tasks.InvoicePDF{TenantID: a.ID, InvoiceID: 1}),
		"other tenant": e.h.InvoicePDF(e.tenantCtx(b), tasks.InvoicePDF{TenantID: a.ID, InvoiceID: 1}),
	} {
		if !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("%s: InvoicePDF = %v, want a permanent error", name, err)
		}
	}
	for _, tn := range []tenantctx.Tenant{a, b} {
		if _, ok := e.documentRow(t, tn, 1); ok {
			t.Errorf("tenant %s got a document", tn.Slug)
		}
	}
}

func TestInvoicePDFHonoursCancelledContext(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, acmeInvoice)
	// Past the chain on purpose: through it, the tenant lookup would
	// already stop on the cancelled ctx, and this is about the handler.
	ctx, cancel := context.WithCancel(e.tenantCtx(acme))
	cancel()
	err := e.h.InvoicePDF(ctx, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id})
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("InvoicePDF with a cancelled ctx = %v, want an ordinary (retried) error", err)
	}
	if _, ok := e.documentRow(t, acme, id); ok {
		t.Error("a cancelled render recorded a document")
	}
}

// pdfResult is invoice:pdf's task result.
type pdfResult struct {
	Key           string `json:"storage_key"`
	SHA256        string `json:"sha256"`
	Bytes         int64  `json:"bytes"`
	FontPath      string `json:"font_path"`
	Unchanged     bool   `json:"unchanged"`
	AmountDiffers bool   `json:"amount_differs"`
}

// workResult runs an invoice:pdf task through the chain and returns its
// result.
func (e *handlerEnv) workResult(t *testing.T, p tasks.InvoicePDF) pdfResult {
	t.Helper()
	var buf bytes.Buffer
	if err := e.w.Work(worker.RecordResults(e.ctx, &buf), p); err != nil {
		t.Fatalf("InvoicePDF %d: %v", p.InvoiceID, err)
	}
	var r pdfResult
	if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
		t.Fatalf("result %q: %v", buf.String(), err)
	}
	return r
}

// Rows inserted exactly as the Invoicer app's model writes them (its
// columns only, no line positions, no due date) render: lines in insertion
// order, the stored amount as the total, "-" as the due date.
func TestInvoicePDFOfAppRows(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme Ωmega Łódź")
	var id, empty int64
	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		var cust int64
		if err := tx.QueryRow(ctx, `INSERT INTO customers (name, email, company) VALUES ($1, $2, $3) RETURNING id`,
			"Zoë Müller", "zoe@mueller.example", "Müller GmbH").Scan(&cust); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `INSERT INTO invoices (customer_id, number, status, amount, currency) VALUES ($1, 'APP-1', 'sent', 1321.75, 'EUR') RETURNING id`,
			cust).Scan(&id); err != nil {
			return err
		}
		for _, l := range [][]any{{"Consulting, January", "12.50", "96.00"}, {"Travel expenses", "1", "171.75"}, {"Loyalty discount", "1", "-50.00"}} {
			if _, err := tx.Exec(ctx, `INSERT INTO line_items (invoice_id, description, quantity, unit_price) VALUES ($1, $2, $3, $4)`, id, l[0], l[1], l[2]); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `INSERT INTO invoices (customer_id, number, amount) VALUES ($1, 'APP-2', 99.95) RETURNING id`, cust).Scan(&empty)
	})
	r := e.workResult(t, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id})
	if r.AmountDiffers || r.Unchanged {
		t.Errorf("result %+v", r)
	}
	text := pdfToText(t, e.readDocument(t, acme, r.Key))
	for _, want := range []string{"Acme Ωmega Łódź", "Zoë Müller", "Müller GmbH", "APP-1", "EUR 1,321.75"} {
		if !strings.Contains(text, want) {
			t.Errorf("PDF of the app's invoice lacks %q:\n%s", want, text)
		}
	}
	if i, j, k := strings.Index(text, "Consulting"), strings.Index(text, "Travel"), strings.Index(text, "Loyalty"); !(i < j && j < k) {
		t.Errorf("lines not in insertion order:\n%s", text)
	}
	if !regexp.MustCompile(`Due date\s+-`).MatchString(text) {
		t.Errorf("no due date should print as -:\n%s", text)
	}
	// An invoice without lines shows its stored amount.
	r = e.workResult(t, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: empty})
	if text := pdfToText(t, e.readDocument(t, acme, r.Key)); !strings.Contains(text, "USD 99.95") {
		t.Errorf("PDF of an invoice without lines lacks its amount USD 99.95:\n%s", text)
	}
}

// When the stored amount is not the lines' sum, the document shows the
// lines' sum (what it prints adds up), a warning names tenant and invoice,
// and the result says so.
func TestInvoicePDFAmountDiffersFromLines(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	inv := acmeInvoice
	inv.Amount = decimal.NewNullDecimal(decimal.RequireFromString("1000.00"))
	id := e.addInvoice(t, acme, acmeCustomer, inv)
	var logs bytes.Buffer
	w := workertest.New(e.h, worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	var res bytes.Buffer
	if err := w.Work(worker.RecordResults(e.ctx, &res), tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.String(), `"amount_differs":true`) {
		t.Errorf("result %s lacks amount_differs", res.String())
	}
	text := pdfToText(t, e.readDocument(t, acme, invoice.DocumentKey(id)))
	if !strings.Contains(text, acmeTotal) || strings.Contains(text, "1,000.00") {
		t.Errorf("PDF should show the lines' sum %s, not the stored 1,000.00:\n%s", acmeTotal, text)
	}
	var warned bool
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"level":"WARN"`) && strings.Contains(l, "amount differs") &&
			strings.Contains(l, `"tenant_id":"`+acme.ID+`"`) && strings.Contains(l, fmt.Sprintf(`"invoice_id":%d`, id)) &&
			strings.Contains(l, `"amount":"1000"`) && strings.Contains(l, `"lines_total":"1331.74"`) {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning naming tenant, invoice, amount and lines' total:\n%s", logs.String())
	}
}

// Which font path a document took shows in the result and the metrics;
// an unchanged document is counted apart.
func TestInvoicePDFFontPathVisible(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	m, err := worker.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	w := workertest.New(e.h, worker.MuxOptions{Logger: discardLogger(), Metrics: m})
	cases := []struct {
		customer, want string
	}{
		{"Zoë Müller", "cp1252"},
		{"Łukasz Żółć", "cp1250"},
		{"Ωmega Ψ Σ и Ж", "utf8"},
	}
	var results []string
	for i, c := range cases {
		inv := acmeInvoice
		inv.Number = fmt.Sprintf("F-%d", i)
		id := e.addInvoice(t, acme, invoice.Customer{Name: c.customer, Email: fmt.Sprintf("c%d@x", i)}, inv)
		var res bytes.Buffer
		if err := w.Work(worker.RecordResults(e.ctx, &res), tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
			t.Fatal(err)
		}
		results = append(results, res.String())
		if want := `"font_path":"` + c.want + `"`; !strings.Contains(res.String(), want) {
			t.Errorf("%s: result %s lacks %s", c.customer, res.String(), want)
		}
		if got := m.PDFRenders(c.want); got != 1 {
			t.Errorf("%s: pdf_renders_total{font_path=%q} = %v, want 1", c.customer, c.want, got)
		}
		if !strings.Contains(pdfToText(t, e.readDocument(t, acme, invoice.DocumentKey(id))), c.customer) {
			t.Errorf("%s: not in the PDF's text", c.customer)
		}
		if err := w.Work(e.ctx, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.PDFUnchanged(); got != float64(len(cases)) {
		t.Errorf("pdf_unchanged_total = %v, want %d", got, len(cases))
	}
	for _, r := range results {
		if strings.Contains(r, "missing_glyph") {
			t.Errorf("result of a document the fonts cover mentions missing glyphs: %s", r)
		}
	}
}

// TestInvoicePDFReportsMissingGlyphs: characters the fonts lack (here
// Japanese) are named in the task result, and a warning says so.
func TestInvoicePDFReportsMissingGlyphs(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	var logs bytes.Buffer
	w := workertest.New(e.h, worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	id := e.addInvoice(t, acme, invoice.Customer{Name: "山田 Zoë", Email: "y@x"}, acmeInvoice)
	var res bytes.Buffer
	if err := w.Work(worker.RecordResults(e.ctx, &res), tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
		t.Fatal(err)
	}
	if want := `"missing_glyphs":["U+5C71","U+7530"],"missing_glyph_count":2`; !strings.Contains(res.String(), want) {
		t.Errorf("result %s lacks %s", res.String(), want)
	}
	if !strings.Contains(logs.String(), `"msg":"invoice has characters the PDF fonts lack; the document prints them as empty boxes"`) ||
		!strings.Contains(logs.String(), `"first":"U+5C71 U+7530"`) || !strings.Contains(logs.String(), `"tenant_id":"`+acme.ID+`"`) {
		t.Errorf("no warning naming the tenant and the characters in the log:\n%s", logs.String())
	}
}

// An invoice over the line limit, whose document is over the size limit,
// or that needs more pages than the page limit, is archived at once with
// the reason, and nothing is stored.
func TestInvoicePDFLimitsArchive(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	c := acmeCustomer
	c.Address = strings.Repeat("Hauptstraße 5\n", 60) // 2 pages
	id := e.addInvoice(t, acme, c, acmeInvoice)       // 4 lines
	for _, tt := range []struct {
		lines int
		bytes int64
		pages int
		want  string
	}{
		{3, 0, 0, "4 lines, more than the limit of 3"},
		{0, 2000, 0, "bytes"},
		{0, 0, 1, "more than 1 pages"},
	} {
		e.h.PDFMaxLines, e.h.PDFMaxBytes, e.h.PDFMaxPages = tt.lines, tt.bytes, tt.pages
		err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id})
		if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, pdf.ErrTooLarge) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("limits %d lines, %d bytes, %d pages: %v; want archived with a reason about %s", tt.lines, tt.bytes, tt.pages, err, tt.want)
		}
		if _, ok := e.documentRow(t, acme, id); ok {
			t.Error("a document was recorded over the limit")
		}
		if _, _, err := e.docs.Open(e.ctx, acme.ID, invoice.DocumentKey(id)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("a document was stored over the limit: %v", err)
		}
	}
	e.h.PDFMaxLines, e.h.PDFMaxBytes, e.h.PDFMaxPages = 4, 1<<20, 2
	if err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
		t.Errorf("at the limits: %v", err)
	}
}

// A render whose task deadline passes stops, is retried (not archived),
// and stores nothing.
func TestInvoicePDFHonoursTaskDeadline(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	inv := acmeInvoice
	for i := range 300 { // several pages
		inv.Lines = append(inv.Lines, line(fmt.Sprintf("Item %d", i), "1", "1.00"))
	}
	id := e.addInvoice(t, acme, acmeCustomer, inv)
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	worker.SetBeforeRender(e.h, func(context.Context) { cancel() }) // the deadline passes as the render starts
	err := e.w.Work(ctx, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id})
	if err == nil || errors.Is(err, asynq.SkipRetry) || !errors.Is(err, context.Canceled) {
		t.Fatalf("InvoicePDF past its deadline = %v, want an ordinary (retried) error wrapping the cancellation", err)
	}
	if _, ok := e.documentRow(t, acme, id); ok {
		t.Error("a cancelled render recorded a document")
	}
	if _, _, err := e.docs.Open(e.ctx, acme.ID, invoice.DocumentKey(id)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a cancelled render stored a document: %v", err)
	}
}

// TestPDFOfInvoiceDeletedWhileRenderingLeavesNoFile: the app deletes the
// invoice while its PDF renders; the record then finds no invoice, the
// task is archived as not found, and the file written for it is removed
// (nothing in the tenant's tables would point to it).
func TestPDFOfInvoiceDeletedWhileRenderingLeavesNoFile(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	a := e.provision(t, "vanishing", "Vanishing Tools")
	id := e.addInvoice(t, a, acmeCustomer, acmeInvoice)
	h := *e.h
	worker.SetBeforeRender(&h, func(context.Context) {
		// Another connection: the render's own transaction stays open.
		if err := schema.InTenant(e.tenantCtx(a), e.pool, func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM invoices WHERE id = $1`, id)
			return err
		}); err != nil {
			t.Errorf("delete the invoice: %v", err)
		}
	})
	w := workertest.New(&h, worker.MuxOptions{Logger: discardLogger()})
	if err := w.Work(e.ctx, tasks.InvoicePDF{TenantID: a.ID, InvoiceID: id}); !errors.Is(err, invoice.ErrNotFound) {
		t.Fatalf("PDF task of an invoice deleted meanwhile: %v, want invoice.ErrNotFound", err)
	}
	if _, info, err := e.docs.Open(e.ctx, a.ID, invoice.DocumentKey(id)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("document of the deleted invoice: %d bytes, %v; want none", info.Bytes, err)
	}
}

// TestRendersOfOneInvoiceRunInTurn: a second render of an invoice (the
// follow-up asked for while the first ran, after an edit) waits for the
// first one's render lock and then loads the edited invoice, so the stored
// document is the edited one whichever started first: a third run finds
// it unchanged.
func TestRendersOfOneInvoiceRunInTurn(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "turns", "Turns Ltd")
	id := e.addInvoice(t, acme, acmeCustomer, acmeInvoice)
	p := tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}
	first, second := e.twoRendersInTurn(t, acme, id)
	for _, err := range []error{first, second} {
		if err != nil {
			t.Fatalf("render: %v", err)
		}
	}
	if r := e.workResult(t, p); !r.Unchanged {
		t.Fatalf("third run %+v: want unchanged (the stored document is the edited invoice's)", r)
	}
	row, _ := e.documentRow(t, acme, id)
	if text := pdfToText(t, e.readDocument(t, acme, row.StorageKey)); !strings.Contains(text, "Edited during the render.") {
		t.Errorf("stored PDF lacks the edit:\n%s", text)
	}
}

// twoRendersInTurn renders invoice id of tn twice, the second render
// asked for while the first runs, after an edit of the invoice (its notes
// become "Edited during the render."): the first render is held once it
// loaded the invoice and holds its render lock, the edit commits, the
// second render starts, and once it waits for the render lock the first
// goes on. It returns the first and the second render's errors.
func (e *handlerEnv) twoRendersInTurn(t *testing.T, tn tenantctx.Tenant, id int64) (first, second error) {
	t.Helper()
	inRender, resume := make(chan struct{}), make(chan struct{})
	// A failure below must not leave the first render blocked: the test
	// would then hang until go test's timeout instead of reporting it.
	var resumed sync.Once
	release := func() { resumed.Do(func() { close(resume) }) }
	defer release()
	slow := *e.h
	worker.SetBeforeRender(&slow, func(context.Context) {
		close(inRender)
		<-resume
	})
	p := tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: id}
	firstDone := make(chan error, 1)
	go func() { firstDone <- workertest.New(&slow, worker.MuxOptions{Logger: discardLogger()}).Work(e.ctx, p) }()
	<-inRender // the first render loaded the invoice and holds its render lock
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE invoices SET notes = 'Edited during the render.' WHERE id = $1", id)
		return err
	})
	secondDone := make(chan error, 1)
	go func() { secondDone <- e.w.Work(e.ctx, p) }()
	// The second waits for the lock (a session of the test's database, the
	// server being shared, waiting for an advisory lock in the render
	// lock's statement).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		waiting, err := testenv.LockWaiters(e.ctx, e.pool, "pg_advisory_xact_lock(pg_catalog.hashtextextended(", "advisory")
		if err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second render did not wait for the first one's lock")
		}
	}
	release()
	return <-firstDone, <-secondDone
}

// TestNaNInvoiceIsArchivedAtOnce: an invoice whose stored amount is NaN
// (PostgreSQL's numeric takes it) fails the same way on every attempt: its
// render and its reminder are archived at once, with the public reason
// that it cannot be rendered, and no document is written.
func TestNaNInvoiceIsArchivedAtOnce(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("NAN-1"))
	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE invoices SET amount = 'NaN' WHERE id = $1`, id)
		return err
	})
	for _, p := range []tasks.Payload{
		tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id},
		tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: acme.Day(time.Now())},
	} {
		err := e.work(p)
		if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, invoice.ErrInvalidData) {
			t.Errorf("%T of a NaN invoice = %v, want asynq.SkipRetry wrapping invoice.ErrInvalidData", p, err)
		}
		if got := worker.PublicReason(err); got != worker.ReasonInvoiceInvalid {
			t.Errorf("%T: public reason %q, want %q", p, got, worker.ReasonInvoiceInvalid)
		}
	}
	if _, _, err := e.docs.Open(e.ctx, acme.ID, invoice.DocumentKey(id)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("document of a NaN invoice: %v, want ErrNotFound", err)
	}
}

// failAfterPut is a document store whose Put writes the document and then
// cancels the task's context, so that the render's unit of work cannot
// commit: what a deadline, a database failure or a kill between the file
// write and the commit leaves.
type failAfterPut struct {
	*storage.FS
	cancel context.CancelFunc
}

func (s failAfterPut) Put(ctx context.Context, tenantID, key string, r io.Reader) (storage.DocumentInfo, error) {
	info, err := s.FS.Put(ctx, tenantID, key, r)
	s.cancel()
	return info, err
}

// TestUnchangedNeedsTheRecordedFile: a render whose unit of work failed
// after its file was written leaves that version of the invoice under the
// key beside the earlier version's row. When the edit is undone, the
// row's inputs match the invoice again, but the file is not the one the
// row records (here it even has the same size): the next run renders
// again instead of keeping it, so the stored PDF says what the invoice
// says and the result's hash is the file's.
func TestUnchangedNeedsTheRecordedFile(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, acmeInvoice) // "Payable within 30 days."
	p := tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}
	setNotes := func(notes string) {
		e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE invoices SET notes = $2 WHERE id = $1", id, notes)
			return err
		})
	}
	first := e.workResult(t, p)

	setNotes("Payable within 03 days.")
	ctx, cancel := context.WithCancel(e.tenantCtx(acme))
	docs := e.h.Documents
	e.h.Documents = failAfterPut{FS: e.docs, cancel: cancel}
	err := e.h.InvoicePDF(ctx, p)
	e.h.Documents = docs
	cancel()
	if err == nil {
		t.Fatal("the render whose commit was cut off succeeded")
	}
	left := e.readDocument(t, acme, invoice.DocumentKey(id))
	if !strings.Contains(pdfToText(t, left), "Payable within 03 days.") || int64(len(left)) != first.Bytes {
		t.Fatalf("the failed render left %d bytes (the first render %d), want the edited invoice's PDF of the same size", len(left), first.Bytes)
	}

	setNotes("Payable within 30 days.") // the edit undone
	r := e.workResult(t, p)
	stored := e.readDocument(t, acme, invoice.DocumentKey(id))
	if r.Unchanged || !strings.Contains(pdfToText(t, stored), "Payable within 30 days.") {
		t.Fatalf("after the edit was undone: %+v; the stored PDF says:\n%s", r, pdfToText(t, stored))
	}
	if sum := sha256.Sum256(stored); r.SHA256 != hex.EncodeToString(sum[:]) || r.SHA256 != first.SHA256 {
		t.Errorf("result's sha256 %s, the file's %x, the first render's %s", r.SHA256, sum, first.SHA256)
	}
	if again := e.workResult(t, p); !again.Unchanged || again.SHA256 != first.SHA256 {
		t.Errorf("the next run: %+v, want the recorded document kept", again)
	}
}

// TestAmountOnlyEditKeepsTheDocument: the stored amount of an invoice with
// lines is not printed (the document shows the lines' sum), so an edit of
// the amount alone keeps the stored document instead of rendering the
// same bytes again.
func TestAmountOnlyEditKeepsTheDocument(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, acmeInvoice)
	p := tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}
	first := e.workResult(t, p)
	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE invoices SET amount = amount + 1 WHERE id = $1", id)
		return err
	})
	if second := e.workResult(t, p); !second.Unchanged || second.SHA256 != first.SHA256 || !second.AmountDiffers {
		t.Errorf("after an edit of the amount alone: %+v, want the stored document kept (and the difference reported)", second)
	}
}

// TestInvoicePDFLongNumberKeepsErrorsShort: an invoice number is text of
// any length, and the renderer's errors name the invoice by it. The task's
// error (asynq's last error in Redis, the dashboard, the log line) quoted
// the whole number: an invoice with a 200 KB number over PDF_MAX_LINES
// gave a 200 KB error. (The number compresses, so PostgreSQL's unique
// index takes it; a megabyte of it does not fit the index.)
func TestInvoicePDFLongNumberKeepsErrorsShort(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	inv := acmeInvoice
	inv.Number = "ACME-" + strings.Repeat("9", 200_000)
	id := e.addInvoice(t, acme, acmeCustomer, inv) // 4 lines
	e.h.PDFMaxLines = 3
	err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id})
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, pdf.ErrTooLarge) {
		t.Fatalf("over the line limit: %.300v; want archived", err)
	}
	if msg := err.Error(); len(msg) > 1000 || !strings.Contains(msg, "4 lines, more than the limit of 3") || !strings.Contains(msg, "ACME-999") {
		t.Errorf("the task's error is %d bytes long: %.300s", len(msg), msg)
	}
}

// TestInvoicePDFManyPagesArchives: a customer address of 4 MB of "a\n"
// (a line of a page each: some 40,000 pages) is stopped at the page limit
// and archived at once with the reason, and nothing is stored. It was laid
// out whole, fpdf holding every page, for gigabytes of allocations and
// seconds of CPU, before PDF_MAX_BYTES refused the document at the end.
func TestInvoicePDFManyPagesArchives(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	c := acmeCustomer
	c.Address = strings.Repeat("a\n", 2<<20)
	id := e.addInvoice(t, acme, c, acmeInvoice)
	err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id})
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, pdf.ErrTooLarge) || !strings.Contains(fmt.Sprint(err), "more than 10000 pages") {
		t.Fatalf("InvoicePDF = %v; want archived with a reason about the pages", err)
	}
	if _, ok := e.documentRow(t, acme, id); ok {
		t.Error("a document was recorded over the page limit")
	}
	if _, _, err := e.docs.Open(e.ctx, acme.ID, invoice.DocumentKey(id)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a document was stored over the page limit: %v", err)
	}
}
