package pdf

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestHeaderTextStaysInItsCell: the issuer's name (a tenant name
// may be 200 bytes, tenantctx.MaxNameLen, "printed on its invoices") is
// shrunk to fit the left 70% of the header; at the 4 pt floor of fitCell a
// 200-character name runs on under "INVOICE" and off the page.
func TestHeaderTextStaysInItsCell(t *testing.T) {
	const ptPerMM = 72 / 25.4
	inv := sampleInvoice()
	inv.TenantName = strings.TrimSpace(strings.Repeat("MEGA HOLDING ", 16))[:200]
	doc := render(t, Renderer{}, inv)
	words := pageWords(t, doc)
	var invoiceWord word
	right := 0.0
	for _, w := range words {
		if w.text == "INVOICE" {
			invoiceWord = w
		}
		if w.yMax < invoiceWord.yMax+1 && (w.text == "MEGA" || w.text == "HOLDING" || strings.HasPrefix("HOLDING", w.text)) {
			right = max(right, w.xMax)
		}
	}
	if invoiceWord.text == "" {
		t.Fatal("no INVOICE on page 1")
	}
	cellRight := (marginX + (210-2*marginX)*0.7) * ptPerMM
	if right > cellRight {
		t.Errorf("the issuer's name ends at x=%.1f pt, past its cell (%.1f pt); INVOICE starts at %.1f pt, the page ends at %.1f pt",
			right, cellRight, invoiceWord.xMin, 210*ptPerMM)
	}
}

// TestInvoiceNumberStaysInItsCell: the invoice number (text, no
// length limit in the schema) is shrunk to fit its 50 mm value cell of the
// details block; past the 4 pt floor it runs left over its label.
func TestInvoiceNumberStaysInItsCell(t *testing.T) {
	const ptPerMM = 72 / 25.4
	inv := sampleInvoice()
	inv.Number = "INV-" + strings.Repeat("2026", 20)
	doc := render(t, Renderer{}, inv)
	var label, value word
	for _, w := range pageWords(t, doc) {
		if w.text == "number" && label.text == "" {
			label = w
		}
	}
	for _, w := range pageWords(t, doc) {
		if w.text == inv.Number && w.yMin > label.yMin-3 && w.yMax < label.yMax+3 {
			value = w
		}
	}
	if label.text == "" || value.text == "" {
		t.Fatalf("label %+v, value %+v", label, value)
	}
	if value.xMin < label.xMax {
		t.Errorf("the invoice number (x=%.1f-%.1f pt) overlaps its label \"Invoice number\" (ends at %.1f pt); its cell starts at %.1f pt",
			value.xMin, value.xMax, label.xMax, (210-marginX-50)*ptPerMM)
	}
}

// TestTooWideEvenAtTheSmallestSizeIsClipped: a number too wide for its
// cell even at the smallest size fpdf writes (text is not length-limited,
// and a repetitive one fits the unique index compressed) shrank to a size
// written as 0, which fpdf takes for "keep the size": it printed at the
// 4 pt floor across its label and off the left edge of the page. It is
// now drawn at the smallest size inside a clipping path of its cell (q
// ... re W n ... Q), and its text is still whole in the content.
func TestTooWideEvenAtTheSmallestSizeIsClipped(t *testing.T) {
	inv := sampleInvoice()
	inv.Number = "INV-" + strings.Repeat("2026", 50000)
	doc := render(t, Renderer{}, inv)
	content := pageContent(t, doc)
	// The details block's, not the header's or footer's (they print the
	// first maxPageNumberRunes characters).
	at := bytes.Index(content, []byte("("+inv.Number[:4*maxPageNumberRunes]))
	if at < 0 {
		t.Fatal("the invoice number is not in the page's content")
	}
	q := bytes.LastIndex(content[:at], []byte("\nq "))
	clip := bytes.LastIndex(content[:at], []byte(" re W n"))
	if q < 0 || clip < q || bytes.LastIndex(content[:at], []byte("\nQ")) > q {
		t.Fatalf("the %d-character number is not drawn inside a clipping path: %q", len(inv.Number), content[max(0, at-200):at])
	}
	// The clipping rectangle is the cell: 50 mm wide, right of the label.
	var x, y, w, h float64
	if _, err := fmt.Sscanf(string(content[q+len("\nq "):clip]), "%f %f %f %f", &x, &y, &w, &h); err != nil {
		t.Fatalf("clipping rectangle %q: %v", content[q:clip], err)
	}
	if cell := 50 * 72 / 25.4; math.Abs(w-cell) > 0.1 || x+w > 210*72/25.4 {
		t.Errorf("the clipping rectangle is x=%.2f, width %.2f pt; want the number's cell, %.2f pt wide, on the page", x, w, cell)
	}
	if end := bytes.Index(content[at:], []byte("\nQ")); end < 0 || !bytes.Contains(content[at:at+end], []byte(")Tj")) {
		t.Errorf("the clipping path does not end after the number")
	}
}

// pageContent returns the inflated content of every compressed stream of
// doc, joined: the pages' drawing operators among them.
func pageContent(t *testing.T, doc []byte) []byte {
	t.Helper()
	var out []byte
	for rest := doc; ; {
		i := bytes.Index(rest, []byte("stream\n"))
		if i < 0 {
			return out
		}
		rest = rest[i+len("stream\n"):]
		j := bytes.Index(rest, []byte("\nendstream"))
		if j < 0 {
			t.Fatal("a stream without its end")
		}
		if z := rest[:j]; len(z) > 2 && z[0] == 0x78 {
			out = append(out, decompress(t, z)...)
			out = append(out, '\n')
		}
		rest = rest[j+len("\nendstream"):]
	}
}
