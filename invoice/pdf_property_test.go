package invoice_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/invoice/invoicetest"
	"github.com/invoicing/tenantworker/pdf"
)

// toPDF is inv as the worker hands it to the renderer.
func toPDF(inv invoice.Invoice, tenantName string) pdf.Invoice {
	out := pdf.Invoice{
		TenantName: tenantName, Number: inv.Number, IssuedAt: inv.IssuedAt.UTC(), Status: inv.Status,
		Currency: inv.Currency, Notes: inv.Notes,
		Customer: pdf.Customer{Name: inv.Customer.Name, Company: inv.Customer.Company, Email: inv.Customer.Email, Address: inv.Customer.Address},
	}
	if !inv.DueAt.IsZero() {
		out.DueAt = inv.DueAt.UTC()
	}
	out.Amount = decimal.NewNullDecimal(inv.Amount)
	for _, l := range inv.Lines {
		out.Lines = append(out.Lines, pdf.Line{Description: l.Description, Quantity: l.Quantity, UnitPrice: l.UnitPrice})
	}
	return out
}

// TestPDFSaysWhatTheDatabaseHolds creates random invoices through Create,
// loads them, renders them and reads the text back: every line's
// quantity, unit price and amount, the subtotal and the total are the
// exact values, formatted with the currency's minor units; no text is
// lost at a page break; the total is printed once, on the last page.
func TestPDFSaysWhatTheDatabaseHolds(t *testing.T) {
	if _, err := exec.LookPath("pdftotext"); err != nil {
		t.Fatalf("pdftotext not found (install poppler-utils: apt-get install poppler-utils): %v", err)
	}
	// 100 invoices by default (every font path and currency class comes
	// up); PDFPROP_N=600 PDFPROP_SEED=7 for a longer run.
	seed := uint64(20260301)
	if s := os.Getenv("PDFPROP_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PDFPROP_SEED: %v", err)
		}
		seed = v
	}
	n := 100
	if s := os.Getenv("PDFPROP_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("PDFPROP_N=%q: want a positive number", s)
		}
		n = v
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	b := setup(t)
	failures := 0
	paths := map[pdf.FontPath]int{}
	for k := range n {
		p := invoicetest.Generate(rng, k)
		var inv invoice.Invoice
		b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
			ids, err := invoice.Create(ctx, tx, p.New)
			if err != nil {
				return fmt.Errorf("invoice %d: %w", k, err)
			}
			inv, err = invoice.Load(ctx, tx, ids[0])
			return err
		})
		var buf bytes.Buffer
		res, err := pdf.Render(context.Background(), &buf, toPDF(inv, "Acme"))
		if err != nil {
			t.Fatalf("invoice %d (seed %d): render: %v", k, seed, err)
		}
		paths[res.FontPath]++
		errs := invoicetest.Check(p, inv, invoicetest.LayoutText(t, buf.Bytes()))
		if len(errs) > 0 {
			failures++
			if failures <= 5 {
				t.Errorf("invoice %d %s (seed %d, %s, %d lines, %d pages, font path %s):\n  %s", k, p.New.Number, seed, p.Currency, len(p.Lines), res.Pages, res.FontPath, strings.Join(errs, "\n  "))
			}
		}
	}
	t.Logf("font paths: %v", paths)
	for _, fp := range []pdf.FontPath{pdf.FontPathCP1252, pdf.FontPathCP1250, pdf.FontPathUTF8, pdf.FontPathUTF8CID} {
		if paths[fp] == 0 && n >= 50 {
			t.Errorf("no invoice took font path %s", fp)
		}
	}
	if failures > 0 {
		t.Errorf("%d of %d invoices print something else than the database holds", failures, n)
	}
}
