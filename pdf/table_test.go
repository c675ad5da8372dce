package pdf

import (
	"math"
	"strings"
	"testing"
)

// TestNumbersPrintWhole checks that quantities, unit prices and amounts
// too wide for their columns print whole on the row's first line, shrunk
// rather than wrapped, down every font path.
func TestNumbersPrintWhole(t *testing.T) {
	t.Parallel()
	for _, tt := range pathIssuers() {
		t.Run(string(tt.path), func(t *testing.T) {
			t.Parallel()
			inv := sampleInvoice()
			inv.TenantName = tt.issuer
			inv.Lines = []Line{
				{Description: "Energy (kWh)", Quantity: dec("1234567.125"), UnitPrice: dec("0.25")},
				{Description: "Hardware", Quantity: dec("-250000"), UnitPrice: dec("999999999.99")},
				{Description: "After", Quantity: dec("1"), UnitPrice: dec("1")},
			}
			doc, res := renderResult(t, Renderer{}, inv)
			if res.FontPath != tt.path {
				t.Fatalf("font path %s, want %s", res.FontPath, tt.path)
			}
			text := pdfText(t, doc, 1)
			for _, s := range []string{"1,234,567.125", "308,641.78", "-250,000", "999,999,999.99", "-249,999,999,997,500.00"} {
				if !strings.Contains(text, s) {
					t.Errorf("PDF text lacks %q on one line:\n%s", s, text)
				}
			}

			words := pageWords(t, doc)
			find := func(text string) word {
				t.Helper()
				for _, w := range words {
					if w.text == text {
						return w
					}
				}
				t.Fatalf("word %q not on page 1", text)
				return word{}
			}
			const ptPerMM = 72 / 25.4
			cols := newTable(&document{inv: inv, contentW: 210 - 2*marginX}).cols
			right := (210 - marginX) * ptPerMM
			rows := []struct {
				desc    string
				numbers []string
			}{
				{"Energy", []string{"1,234,567.125", "0.25", "308,641.78"}},
				{"Hardware", []string{"-250,000", "999,999,999.99", "-249,999,999,997,500.00"}},
			}
			for _, r := range rows {
				d := find(r.desc)
				x := (marginX + cols[0].width) * ptPerMM
				for i, s := range r.numbers {
					w := find(s)
					// On the description's line (a shrunk number sits a
					// little lower: its cell is centred vertically).
					if math.Abs((w.yMin+w.yMax)/2-(d.yMin+d.yMax)/2) > 1.5 {
						t.Errorf("%q at y=%.1f-%.1f, want it on the line of %q (y=%.1f-%.1f)", s, w.yMin, w.yMax, r.desc, d.yMin, d.yMax)
					}
					colRight := x + cols[i+1].width*ptPerMM
					if w.xMin < x || w.xMax > colRight || w.xMax > right {
						t.Errorf("%q at x=%.1f-%.1f, outside its column (x=%.1f-%.1f)", s, w.xMin, w.xMax, x, colRight)
					}
					x = colRight
				}
			}
			// Each row is one line high.
			energy, hardware, after := find("Energy"), find("Hardware"), find("After")
			step := (lineH + 2*cellPadY) * ptPerMM
			for _, gap := range []float64{hardware.yMin - energy.yMin, after.yMin - hardware.yMin} {
				if math.Abs(gap-step) > 0.5 {
					t.Errorf("rows %.1f pt apart, want one line (%.1f pt)", gap, step)
				}
			}
		})
	}
}

// TestTableHeaderKeptWithFirstRow: the table's header row is kept on the
// page of the first line item. A header near the foot of a page (under a
// long address) whose first row, two lines or more, did not fit under it
// was left alone there, an empty table, and repeated over the row on the
// next page.
func TestTableHeaderKeptWithFirstRow(t *testing.T) {
	t.Parallel()
	for n := 42; n <= 47; n++ { // address lines that bring the table to the foot of page 1
		inv := sampleInvoice()
		inv.Customer.Address = strings.TrimSpace(strings.Repeat("Line of address\n", n))
		inv.Lines = []Line{{Description: "First item\nits second line\nits third line", Quantity: dec("1"), UnitPrice: dec("1")}}
		doc := render(t, Renderer{}, inv)
		for p := 1; p <= pageCount(t, doc); p++ {
			text := pdfText(t, doc, p)
			if strings.Contains(text, "Description") && !strings.Contains(text, "First item") {
				t.Errorf("%d address lines: page %d has the table header without a line item:\n%s", n, p, text)
			}
		}
	}
}
