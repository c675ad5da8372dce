package pdf

import (
	"strconv"

	"github.com/go-pdf/fpdf"
)

// Page geometry in millimetres (A4 portrait) and type sizes in points.
const (
	marginX      = 15.0  // left and right margin
	marginTop    = 12.0  // top of the page header
	contentTop   = 30.0  // first content line under the page header
	contentLimit = 279.0 // content ends here; the footer follows
	footerY      = 284.0 // baseline area of the footer

	bodySize   = 9.0
	lineH      = 4.6 // height of one line of body text
	titleSize  = 15.0
	minFitSize = 4.0 // smallest size a too-wide one-line value shrinks to

	pageCountAlias = "{nb}"
)

// document lays out one invoice on an fpdf document.
type document struct {
	f   *fpdf.Fpdf
	inv Invoice

	contentW float64 // width between the margins
	table    table   // the line-item table
}

// newDocument prepares inv for rendering on f, whose fonts are registered.
func newDocument(f *fpdf.Fpdf, inv Invoice) *document {
	w, _ := f.GetPageSize()
	d := &document{f: f, inv: inv, contentW: w - 2*marginX}
	d.table = newTable(d)
	f.SetMargins(marginX, marginTop, marginX)
	f.SetAutoPageBreak(false, 0) // page breaks are placed by the layout
	f.SetHeaderFunc(d.pageHeader)
	f.SetFooterFunc(d.pageFooter)
	return d
}

// render draws the whole invoice.
func (d *document) render() {
	d.f.AddPage()
	d.details()
	d.table.render()
	d.totals()
	d.notes()
}

// setFont selects the embedded font, bold or regular, at size points.
func (d *document) setFont(bold bool, size float64) {
	style := ""
	if bold {
		style = "B"
	}
	d.f.SetFont(fontFamily, style, size)
}

// pageHeader draws the issuer and the invoice number on top of every page.
func (d *document) pageHeader() {
	f := d.f
	f.SetTextColor(0, 0, 0)
	f.SetXY(marginX, marginTop)
	d.fitCell(d.contentW*0.7, 8, cleanText(d.inv.TenantName, false), "L", true, titleSize)
	f.SetXY(marginX+d.contentW*0.7, marginTop)
	d.fitCell(d.contentW*0.3, 8, "INVOICE", "R", true, titleSize)

	f.SetTextColor(80, 80, 80)
	f.SetXY(marginX+d.contentW*0.3, marginTop+8)
	d.fitCell(d.contentW*0.7, lineH, cleanText(d.inv.Number, false), "R", false, bodySize)
	f.SetTextColor(0, 0, 0)

	f.SetDrawColor(160, 160, 160)
	f.SetLineWidth(0.3)
	f.Line(marginX, contentTop-3, marginX+d.contentW, contentTop-3)
	f.SetXY(marginX, contentTop)
}

// pageFooter draws "Page X of Y" at the bottom of every page.
func (d *document) pageFooter() {
	f := d.f
	d.setFont(false, bodySize-1)
	f.SetTextColor(80, 80, 80)
	f.SetXY(marginX, footerY)
	f.CellFormat(d.contentW/2, lineH, cleanText(d.inv.Number, false), "", 0, "L", false, 0, "")

	// fpdf sizes the text with the alias in it, not with the page count
	// that replaces it, so a right-aligned cell would drift; start the text
	// where the widest plausible count would put it instead.
	widest := "Page 9999 of 9999"
	label := "Page " + strconv.Itoa(f.PageNo()) + " of " + pageCountAlias
	f.SetXY(marginX+d.contentW-f.GetStringWidth(widest)-2, footerY)
	f.CellFormat(0, lineH, label, "", 0, "L", false, 0, "")
	f.SetTextColor(0, 0, 0)
}

// breakPage starts a new page when h more millimetres do not fit on this
// one, and reports whether it did.
func (d *document) breakPage(h float64) bool {
	if d.f.GetY()+h <= contentLimit {
		return false
	}
	d.f.AddPage()
	return true
}

// paragraph writes text as wrapped lines of width w starting at x on the
// current line, continuing on new pages as needed, and leaves the cursor
// under the last line at the left margin.
func (d *document) paragraph(x, w float64, bold bool, text string) {
	d.setFont(bold, bodySize)
	for _, line := range d.wrap(cleanText(text, true), w) {
		d.breakPage(lineH)
		y := d.f.GetY()
		d.f.SetXY(x, y)
		d.f.CellFormat(w, lineH, line, "", 0, "L", false, 0, "")
		d.f.SetXY(marginX, y+lineH)
	}
}

// wrap splits text into lines no wider than w in the current font. Text
// without any content gives no lines, and so does a document in error:
// fpdf's SplitText does not check for an earlier error and would crash
// without a font.
func (d *document) wrap(text string, w float64) []string {
	if text == "" || d.f.Err() {
		return nil
	}
	return d.f.SplitText(text, w)
}
