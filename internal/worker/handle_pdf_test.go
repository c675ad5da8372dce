package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/invoice"
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

	// A second render is the same document: same bytes, same SHA-256.
	time.Sleep(10 * time.Millisecond)
	if err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
		t.Fatalf("second InvoicePDF: %v", err)
	}
	row2, _ := e.documentRow(t, acme, id)
	if row2.SHA256 != row.SHA256 || row2.Bytes != row.Bytes || row2.StorageKey != row.StorageKey {
		t.Errorf("second render changed the document: %+v, was %+v", row2, row)
	}
	if !row2.RenderedAt.After(row.RenderedAt) {
		t.Errorf("rendered_at not updated by the second render: %v, was %v", row2.RenderedAt, row.RenderedAt)
	}
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
