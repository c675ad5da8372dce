package pdf

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// TestLongInvoiceNumberAllocationBounded: the invoice number (text, no
// length limit in the schema; its unique index takes 256 KB of repetitive
// text) is printed in the header and the footer of every page. Printed
// whole there, a 256 KB number on an invoice of 5,000 lines (PDF_MAX_LINES,
// 152 pages) made the render allocate some 950 MB (370 MB of heap: fpdf
// keeps every page) for a document of a megabyte: a few such renders at
// once run a worker out of memory. The pages show a bounded part of
// it; the details block, once, the whole number.
func TestLongInvoiceNumberAllocationBounded(t *testing.T) {
	inv := sampleInvoice()
	inv.Number = strings.Repeat("N", 256<<10)
	inv.Lines = manyLines(DefaultMaxLines)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var buf bytes.Buffer
	res, err := Render(context.Background(), &buf, inv)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("Render = %v", err)
	}
	const bound = 256 << 20
	if n := after.TotalAlloc - before.TotalAlloc; n > bound {
		t.Errorf("a %d-page render of an invoice with a 256 KB number allocated %d MB, more than %d MB (document: %d bytes)",
			res.Pages, n>>20, bound>>20, res.Bytes)
	}
	// The header and the footer of a later page show its beginning.
	if text := pdfText(t, buf.Bytes(), 2); !strings.Contains(text, "NNNNNNNNNN...") || strings.Contains(text, inv.Number) {
		t.Errorf("page 2 does not show a shortened invoice number:\n%.500s", text)
	}
}

// TestRenderErrorBoundsTheNumber: Render's errors name the invoice by its
// number, and the worker puts them in the task's last error (Redis, the
// dashboard) and in its log: a number of a megabyte made each of those a
// megabyte long.
func TestRenderErrorBoundsTheNumber(t *testing.T) {
	inv := sampleInvoice()
	inv.Number = "INV-" + strings.Repeat("7", 1<<20)
	_, err := Renderer{MaxLines: 1}.Render(context.Background(), &bytes.Buffer{}, inv)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Render = %v, want ErrTooLarge", err)
	}
	if msg := err.Error(); len(msg) > 1000 || !strings.Contains(msg, "INV-777") || !strings.Contains(msg, "lines") {
		t.Errorf("error of %d bytes: %.300s", len(msg), msg)
	}
}
