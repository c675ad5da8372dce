package pdf

import (
	"github.com/go-pdf/fpdf"
)

// cellPadY is the space above and below the text of a table row.
const cellPadY = 1.3

// column is one column of the line-item table.
type column struct {
	title string
	width float64
	align string // fpdf alignment: "L" or "R"
	// fit marks a column of numbers: its cells print whole on the row's
	// first line, shrunk to fit (see fitCell), and are never wrapped, which
	// would break a number apart. The column's title wraps.
	fit bool
}

// table draws the line items: one row per line, wrapped descriptions,
// numbers on one line, the header row repeated on every page the table continues on.
type table struct {
	d    *document
	f    *fpdf.Fpdf
	cols []column
}

// newTable returns the line-item table of d's invoice.
func newTable(d *document) table {
	cur := d.text(d.inv.Currency, false)
	qtyW, priceW, amountW := 22.0, 35.0, 37.0
	return table{d: d, f: d.f, cols: []column{
		{"Description", d.contentW - qtyW - priceW - amountW, "L", false},
		{"Quantity", qtyW, "R", true},
		{"Unit price (" + cur + ")", priceW, "R", true},
		{"Amount (" + cur + ")", amountW, "R", true},
	}}
}

// render draws the table from the cursor on.
func (t *table) render() {
	first := []string{"No line items.", "", "", ""}
	if len(t.d.inv.Lines) > 0 {
		first = t.cells(t.d.inv.Lines[0])
	}
	firstLines := t.split(first, false)
	firstH := rowHeight(firstLines)
	header := t.split(t.titles(), true)
	// Keep the header with the first row: a row that does not fit under
	// it moves to the next page, under a header of its own, and would
	// leave this one alone at the foot of the page. A row taller than a
	// page starts here anyway: keep the header with its first line.
	keep := lineH + 2*cellPadY
	if firstH <= t.roomOnNewPage() {
		keep = firstH
	}
	t.d.breakPage(rowHeight(header) + keep)
	t.header()

	// The first row as measured above; the others as they come.
	t.d.setFont(false, bodySize)
	t.rowLines(firstLines)
	for _, l := range t.d.inv.Lines[min(1, len(t.d.inv.Lines)):] {
		if t.f.Err() {
			return // canceled, or an error fpdf reports at the end
		}
		t.row(t.cells(l))
	}
}

// cells returns the texts of l's row: its description, encoded, and its
// quantity, unit price and amount, formatted.
func (t *table) cells(l Line) []string {
	cur := t.d.inv.Currency
	return []string{
		t.d.text(l.Description, true),
		formatQuantity(l.Quantity),
		formatPrice(l.UnitPrice, cur),
		formatAmount(LineTotal(l, cur), cur),
	}
}

// titles returns the column titles.
func (t *table) titles() []string {
	titles := make([]string, len(t.cols))
	for i, c := range t.cols {
		titles[i] = c.title
	}
	return titles
}

// header draws the header row at the cursor on a grey band.
func (t *table) header() {
	f := t.f
	lines := t.split(t.titles(), true)
	y := f.GetY()
	h := rowHeight(lines)
	f.SetFillColor(232, 232, 232)
	f.Rect(marginX, y, t.d.contentW, h, "F")
	// Back to the text's black: while the fill color differs from the
	// text color, fpdf wraps every text in its own graphics state.
	f.SetFillColor(0, 0, 0)
	t.draw(lines, 0, lineCount(lines), y, true)
	f.SetY(y + h)
}

// newPage continues the table on a new page, under a repeated header.
func (t *table) newPage() {
	t.f.AddPage()
	t.header()
}

// row draws one table row of cells. A row that does not fit on this page
// moves to the next one whole; a row taller than a whole page starts here
// and continues, a page's worth of lines at a time, on the next pages.
func (t *table) row(cells []string) {
	t.rowLines(t.split(cells, false))
}

// rowLines draws a body row whose cells split has wrapped into lines,
// with the body font set.
func (t *table) rowLines(lines [][]string) {
	f := t.f
	n := lineCount(lines)
	if f.GetY()+rowHeight(lines) > contentLimit && rowHeight(lines) <= t.roomOnNewPage() {
		t.newPage()
	}
	for start := 0; start < n && !f.Err(); {
		// As many lines as fit by rowHeight's arithmetic: dividing instead
		// rounds an exact fit down (float error) and splits a row that fits.
		room := 0
		for start+room < n && f.GetY()+(float64(room+1)*lineH+2*cellPadY) <= contentLimit {
			room++
		}
		if room < 1 {
			t.newPage()
			continue
		}
		end := min(n, start+room)
		y := f.GetY()
		t.draw(lines, start, end, y, false)
		y += float64(end-start)*lineH + 2*cellPadY
		t.d.setLine(200, 0.2)
		f.Line(marginX, y, marginX+t.d.contentW, y)
		f.SetY(y)
		start = end
	}
}

// roomOnNewPage is the height a new page offers under the table header.
func (t *table) roomOnNewPage() float64 {
	return contentLimit - contentTop - rowHeight(t.split(t.titles(), true))
}

// split wraps each cell to its column's width, in bold for the header
// row. A body cell of a fit column stays one line, however wide. Every
// cell gets at least one (possibly empty) line.
func (t *table) split(cells []string, header bool) [][]string {
	bold := header
	t.d.setFont(bold, bodySize)
	lines := make([][]string, len(cells))
	for i, c := range cells {
		if t.cols[i].fit && !header {
			lines[i] = []string{c}
			continue
		}
		lines[i] = t.d.wrap(c, t.cols[i].width, bold, bodySize)
		if len(lines[i]) == 0 {
			lines[i] = []string{""}
		}
	}
	return lines
}

// draw writes lines start to end (exclusive) of every cell in a row band
// whose top is at y, of the header row or a body row as split made them.
// A body cell of a fit column is shrunk to fit its one line.
func (t *table) draw(lines [][]string, start, end int, y float64, header bool) {
	bold := header
	x := marginX
	for i, col := range t.cols {
		for k := start; k < end && k < len(lines[i]); k++ {
			t.f.SetXY(x, y+cellPadY+float64(k-start)*lineH)
			if col.fit && !header {
				t.d.fitCell(col.width, lineH, lines[i][k], col.align, bold, bodySize)
				continue
			}
			t.d.setFont(bold, bodySize)
			t.f.CellFormat(col.width, lineH, lines[i][k], "", 0, col.align, false, 0, "")
		}
		x += col.width
	}
}

// lineCount is the number of lines of the row's tallest cell.
func lineCount(lines [][]string) int {
	n := 1
	for _, l := range lines {
		n = max(n, len(l))
	}
	return n
}

// rowHeight is the height of a whole row of wrapped cells.
func rowHeight(lines [][]string) float64 {
	return float64(lineCount(lines))*lineH + 2*cellPadY
}
