package pdf

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// tableStartY is where the first body row of inv's table starts on page 1.
func tableStartY(t *testing.T, inv Invoice) float64 {
	t.Helper()
	enc, used, _, _ := chooseEncoding(context.Background(), inv)
	f := Renderer{}.newPDF(inv)
	fonts, err := addFonts(f, enc, used)
	defer fonts.release()
	if err != nil {
		t.Fatal(err)
	}
	d := newDocument(context.Background(), f, inv, enc, fonts, DefaultMaxPages)
	f.AddPage()
	d.details()
	header := d.table.split(d.table.titles(), true)
	d.breakPage(rowHeight(header) + lineH + 2*cellPadY)
	d.table.header()
	return f.GetY()
}

// TestRowThatFitsIsNotSplit: the package promises that "a row is kept
// on one page unless it is taller than a whole page". A row that fills the
// rest of the page exactly must stay whole; the room computed for it in
// table.row is rounded down by a float error, so its last line goes to the
// next page.
func TestRowThatFitsIsNotSplit(t *testing.T) {
	inv := sampleInvoice()
	inv.TenantName = "Acme GmbH"
	y := tableStartY(t, inv)
	// Search the sequences of rows of 1 to 3 lines (by the layout's own
	// arithmetic) for one after which a row of k lines fits the rest of
	// page 1 exactly: no page break for it, but less room than k lines.
	type state struct {
		y      float64
		counts []int
	}
	var counts []int
	// Fill page 1 with one-line rows; the search starts on page 2, under
	// the repeated table header.
	var fill []int
	for y+rowHeight(make([][]string, 1)) <= contentLimit {
		fill = append(fill, 1)
		y += lineH + 2*cellPadY
	}
	y = contentTop + rowHeight(make([][]string, 1))
	frontier := []state{{y: y, counts: fill}}
	seen := map[float64]bool{y: true}
search:
	for len(frontier) > 0 {
		s := frontier[0]
		frontier = frontier[1:]
		for k := 1; k <= 3; k++ {
			h := float64(k)*lineH + 2*cellPadY
			if s.y+h > contentLimit {
				continue
			}
			if k > 1 && int((contentLimit-s.y-2*cellPadY)/lineH) < k {
				counts = append(append([]int{}, s.counts...), k)
				break search
			}
			ny := s.y + h
			if !seen[ny] {
				seen[ny] = true
				frontier = append(frontier, state{ny, append(append([]int{}, s.counts...), k)})
			}
		}
	}
	if counts == nil {
		t.Fatal("no sequence of rows fits the rest of page 2 exactly: the layout changed; find another")
	}
	t.Logf("rows of %v lines", counts)
	inv.Lines = nil
	for i, k := range counts {
		var parts []string
		for j := range k {
			parts = append(parts, fmt.Sprintf("r%02dl%d", i, j))
		}
		inv.Lines = append(inv.Lines, Line{Description: strings.Join(parts, "\n"), Quantity: dec("1"), UnitPrice: dec("1")})
	}
	doc := render(t, Renderer{}, inv)
	last := len(counts) - 1
	page2 := pdfText(t, doc, 2)
	for j := range counts[last] {
		if w := fmt.Sprintf("r%02dl%d", last, j); !strings.Contains(page2, w) {
			t.Errorf("line %d of the last row (%q), a row that fits on page 2, is not on page 2", j, w)
		}
	}
}
