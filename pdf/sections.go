package pdf

import (
	"math"
	"strings"
)

// details draws the bill-to block on the left and the invoice's number,
// dates and status on the right, under the first page's header.
func (d *document) details() {
	f := d.f
	top := f.GetY()

	// Right: label/value pairs.
	labelW, valueW := 28.0, 50.0
	x := marginX + d.contentW - labelW - valueW
	rows := [][2]string{
		{"Invoice number", d.inv.Number},
		{"Issue date", formatDate(d.inv.IssuedAt)},
		{"Due date", formatDate(d.inv.DueAt)},
		{"Status", d.inv.Status},
	}
	for i, r := range rows {
		y := top + float64(i)*lineH
		d.setFont(true, bodySize)
		f.SetXY(x, y)
		f.CellFormat(labelW, lineH, r[0], "", 0, "L", false, 0, "")
		// A value too wide for its cell is shrunk to fit rather than
		// wrapped, so the four rows stay one line each.
		f.SetXY(x+labelW, y)
		d.fitCell(valueW, lineH, d.text(r[1], false), "R", false, bodySize)
	}
	rightBottom := top + float64(len(rows))*lineH

	// Left: the customer, which may run long (an address of many lines)
	// and continues on the next page if it must.
	leftW := x - marginX - 5
	f.SetXY(marginX, top)
	d.paragraph(marginX, leftW, true, "Bill to")
	c := d.inv.Customer
	d.paragraph(marginX, leftW, true, c.Name)
	for _, s := range []string{c.Company, c.Email, c.Address} {
		if strings.TrimSpace(s) != "" {
			d.paragraph(marginX, leftW, false, s)
		}
	}

	y := f.GetY()
	if f.PageNo() == 1 && y < rightBottom {
		y = rightBottom
	}
	f.SetXY(marginX, y+6)
}

// fitCell writes s into a one-line cell of width w at the cursor, in the
// given weight at size points or, when s is too wide for that, at the
// largest smaller size (down to minFitSize) at which it fits. Nothing is
// cut off: amounts and numbers must print whole. Soft hyphens are left
// out: the text is not wrapped.
func (d *document) fitCell(w, h float64, s, align string, bold bool, size float64) {
	s = d.visible(s)
	d.setFont(bold, size)
	limit := w - 2*d.f.GetCellMargin()
	for size > minFitSize && d.f.GetStringWidth(s) > limit {
		size -= 0.5
		d.setFont(bold, size)
	}
	if sw := d.f.GetStringWidth(s); sw > limit && limit > 0 {
		// Still too wide at the smallest step: the size at which it
		// fits exactly (widths scale with the size), so that it never
		// runs over the cells beside it or off the page. fpdf writes a
		// size with two decimals and takes 0 for "keep the size": a text
		// more than a few hundred times too wide would print at the
		// smallest step, across its label and off the page, so the size
		// stops at the smallest one written, and what is still too wide
		// there is clipped to its cell (whole in the text, which a reader
		// extracts, and cut where it is drawn).
		fit := max(math.Floor(size*limit/sw*100)/100, minWrittenSize)
		d.setFont(bold, fit)
		if d.f.GetStringWidth(s) > limit {
			x, y := d.f.GetXY()
			d.f.ClipRect(x, y, w, h, false)
			d.f.CellFormat(w, h, s, "", 0, align, false, 0, "")
			d.f.ClipEnd()
			return
		}
	}
	d.f.CellFormat(w, h, s, "", 0, align, false, 0, "")
}

// totals draws the subtotal and the total under the table, right-aligned.
func (d *document) totals() {
	f := d.f
	sum := Subtotal(d.inv)
	h := 2*lineH + 3
	d.breakPage(h + 2)
	f.SetY(f.GetY() + 2)

	labelW, valueW := 35.0, 55.0
	x := marginX + d.contentW - labelW - valueW
	rows := []struct {
		label string
		bold  bool
		size  float64
	}{
		{"Subtotal", false, bodySize},
		{"Total", true, bodySize + 1},
	}
	for _, r := range rows {
		y := f.GetY()
		if r.bold {
			d.setLine(0, 0.3)
			f.Line(x, y+0.5, marginX+d.contentW, y+0.5)
			y += 1
		}
		d.setFont(r.bold, r.size)
		f.SetXY(x, y)
		f.CellFormat(labelW, lineH+1, r.label, "", 0, "L", false, 0, "")
		f.SetXY(x+labelW, y)
		d.fitCell(valueW, lineH+1, FormatMoney(sum, d.inv.Currency), "R", r.bold, r.size)
		f.SetXY(marginX, y+lineH+1)
	}
	f.SetY(f.GetY() + 6)
}

// notes draws the invoice's notes, if any, across the full width.
func (d *document) notes() {
	if strings.TrimSpace(d.inv.Notes) == "" {
		return
	}
	d.breakPage(2 * lineH)
	d.paragraph(marginX, d.contentW, true, "Notes")
	d.paragraph(marginX, d.contentW, false, d.inv.Notes)
}
