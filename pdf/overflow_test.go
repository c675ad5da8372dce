package pdf

import (
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
