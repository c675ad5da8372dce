package pdf

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

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
	// minWrittenSize is the smallest font size fpdf writes (two
	// decimals; 0 is "keep the current size").
	minWrittenSize = 0.01

	// pageCountAlias stands for the page count until fpdf writes the
	// document, which replaces it on every page, in any text: first its
	// bytes, then its UTF-16BE form. No invoice text holds either, whatever
	// the font path: text has no U+0000 or U+0001 (control characters
	// print as U+FFFD), so neither a single-byte NUL nor, in the UTF-16BE
	// text of the utf8-cid path, the unit 0000 (its first two bytes, at an
	// even offset) or 0001 (its middle two, at an odd one). Nor does its
	// UTF-16BE form hold its bytes. (fpdf's default, "{nb}", turned a
	// description that said "{nb}" into a number; "\x01nb\x01" matched the
	// UTF-16BE of text such as "Ů戁", U+016E U+6201, on the utf8-cid path.)
	pageCountAlias = "\x00\x00\x01\x01"
)

// document lays out one invoice on an fpdf document.
type document struct {
	ctx context.Context // checked between pages
	// maxPages is the most pages the layout adds: the next one ends the
	// render with ErrTooLarge.
	maxPages int
	f        *fpdf.Fpdf
	inv      Invoice
	enc      *encoding // the text encoding of f's fonts
	// widths are the advances of the codes of the single-byte fonts,
	// regular and bold, in thousandths of an em; nil for FontPathUTF8CID.
	widths [2]*[256]int
	// faces are the parsed regular and bold fonts, which give the widths
	// of FontPathUTF8CID's characters; nil on the other paths.
	faces [2]*face

	contentW float64 // width between the margins
	// pageNumber is the invoice number as every page's header and footer
	// print it, encoded: at most maxPageNumberRunes of it (shortNumber).
	pageNumber string
	table      table // the line-item table

	font docFont // the font selected last, if known
	line docLine // the line style set last, if known
}

// docLine is the style of the lines drawn on the page.
type docLine struct {
	known bool // false: fpdf may have changed the style since
	gray  int  // draw color, 0 (black) to 255 (white)
	width float64
}

// setLine sets the gray level and width of the lines drawn from now on;
// like setFont, it passes on changes only.
func (d *document) setLine(gray int, width float64) {
	want := docLine{known: true, gray: gray, width: width}
	if d.line == want {
		return
	}
	d.f.SetDrawColor(gray, gray, gray)
	d.f.SetLineWidth(width)
	d.line = want
}

// docFont is a font selection on the page.
type docFont struct {
	known bool // false: fpdf may have changed the font since
	bold  bool
	size  float64
}

// newDocument prepares inv for rendering on f, whose fonts for enc are
// registered, in at most maxPages pages. The layout stops at the next
// page once ctx is done, and at page maxPages+1.
func newDocument(ctx context.Context, f *fpdf.Fpdf, inv Invoice, enc *encoding, fonts *docFonts, maxPages int) *document {
	w, _ := f.GetPageSize()
	d := &document{ctx: ctx, maxPages: maxPages, f: f, inv: inv, enc: enc, widths: fonts.widths, faces: fonts.faces, contentW: w - 2*marginX}
	d.pageNumber = d.text(shortNumber(inv.Number), false)
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
// fpdf writes every selection to the page, and most would repeat the
// font already selected: only changes are passed on.
func (d *document) setFont(bold bool, size float64) {
	want := docFont{known: true, bold: bold, size: size}
	if d.font == want {
		return
	}
	style := ""
	if bold {
		style = "B"
	}
	d.f.SetFont(fontFamily, style, size)
	d.font = want
}

// pageHeader draws the issuer and the invoice number on top of every
// page. A page is also where a render that ctx ended, or that would pass
// the page limit, stops: the error makes fpdf ignore every later call,
// and the layout's loops end on it.
func (d *document) pageHeader() {
	f := d.f
	// fpdf sets the page's font and line style before the header and again
	// after it (those of before AddPage).
	d.font.known, d.line.known = false, false
	defer func() { d.font.known, d.line.known = false, false }()
	if err := d.ctx.Err(); err != nil {
		f.SetError(err)
		return
	}
	if f.PageNo() > d.maxPages {
		f.SetError(fmt.Errorf("%w: more than %d pages", ErrTooLarge, d.maxPages))
		return
	}
	f.SetTextColor(0, 0, 0)
	f.SetXY(marginX, marginTop)
	d.fitCell(d.contentW*0.7, 8, d.text(d.inv.TenantName, false), "L", true, titleSize)
	f.SetXY(marginX+d.contentW*0.7, marginTop)
	d.fitCell(d.contentW*0.3, 8, "INVOICE", "R", true, titleSize)

	f.SetTextColor(80, 80, 80)
	f.SetXY(marginX+d.contentW*0.3, marginTop+8)
	d.fitCell(d.contentW*0.7, lineH, d.pageNumber, "R", false, bodySize)
	f.SetTextColor(0, 0, 0)

	d.setLine(160, 0.3)
	f.Line(marginX, contentTop-3, marginX+d.contentW, contentTop-3)
	f.SetXY(marginX, contentTop)
}

// pageFooter draws "Page X of Y" and the invoice number at the bottom of
// every page. fpdf puts the page count in place of its alias only when it
// writes the document, after it has measured and placed the text with the
// alias in it: so the label goes on the left, where its width does not
// matter, and the number of known width on the right, aligned with the
// amounts above.
func (d *document) pageFooter() {
	f := d.f
	const labelW = 40.0 // "Page 9999 of 9999" needs 25
	f.SetTextColor(80, 80, 80)
	d.setFont(false, bodySize-1)
	f.SetXY(marginX, footerY)
	f.CellFormat(labelW, lineH, "Page "+strconv.Itoa(f.PageNo())+" of "+pageCountAlias, "", 0, "L", false, 0, "")
	f.SetXY(marginX+labelW, footerY)
	d.fitCell(d.contentW-labelW, lineH, d.pageNumber, "R", false, bodySize-1)
	f.SetTextColor(0, 0, 0)
}

// maxPageNumberRunes is the most characters of the invoice number that
// the header and the footer of every page print, and that Render's errors
// quote. The number is text of any length: printed whole on every page, a
// number of a megabyte made each page hold megabytes (and the render
// allocate gigabytes for a document of a few); the details block prints
// it whole, once.
const maxPageNumberRunes = 64

// shortNumber returns number, or its first maxPageNumberRunes characters
// followed by "..." when it is longer.
func shortNumber(number string) string {
	n := 0
	for i := range number {
		if n == maxPageNumberRunes {
			return number[:i] + "..."
		}
		n++
	}
	return number
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
	for _, line := range d.wrap(d.text(text, true), w, bold, bodySize) {
		if d.f.Err() {
			return
		}
		d.breakPage(lineH)
		y := d.f.GetY()
		d.f.SetXY(x, y)
		d.f.CellFormat(w, lineH, line, "", 0, "L", false, 0, "")
		d.f.SetXY(marginX, y+lineH)
	}
}

// text cleans s (see cleanText) and encodes it for the document's fonts.
// Every text the layout takes from the invoice goes through here; the
// fixed labels are printable ASCII, which every encoding keeps as it is.
//
// A text is of any length, so text reads one longer than
// composeCheckBytes a chunk of that size at a time and checks the context
// before each: once it is done, the layout stops (with its error) and
// text returns "". It returns "" for such a text at once when the layout
// has stopped already (the context, the page limit): nothing more is
// drawn, and the rest of the invoice's text is not read.
func (d *document) text(s string, multiline bool) string {
	if len(s) <= composeCheckBytes {
		return d.encode(s, multiline)
	}
	if d.f.Err() {
		return ""
	}
	var b strings.Builder
	for len(s) > 0 {
		if err := d.ctx.Err(); err != nil {
			d.f.SetError(err)
			return ""
		}
		end := min(len(s), composeCheckBytes)
		// A chunk ends between characters (of valid UTF-8: invalid bytes
		// read as U+FFFD whatever the chunk), and not inside a \r\n, one
		// line break.
		for k := 1; k < utf8.UTFMax && end < len(s) && !utf8.RuneStart(s[end]); k++ {
			end++
		}
		if end < len(s) && s[end-1] == '\r' && s[end] == '\n' {
			end++
		}
		t := d.encode(s[:end], multiline)
		if d.f.Err() {
			return ""
		}
		b.WriteString(t)
		s = s[end:]
	}
	return b.String()
}

// encode is text for one chunk of text.
func (d *document) encode(s string, multiline bool) string {
	t, ok := d.enc.text(s, multiline)
	if !ok {
		// chooseEncoding picked an encoding that holds every character.
		d.f.SetErrorf("text %q has a character the %s encoding lacks", s, d.enc.path)
	}
	return t
}

// wrap splits text, encoded by d.text, into lines no wider than w in the
// current font, which is bold or not at size points. Text without any
// content gives no lines, and so does a document in error. It returns at
// most wrapLimit lines: more would not fit in the page limit, so the
// layout stops before it gets to the rest (a megabyte of short lines
// otherwise took tens of megabytes to split, all for nothing).
func (d *document) wrap(text string, w float64, bold bool, size float64) []string {
	if text == "" || d.f.Err() {
		return nil
	}
	b := 0
	if bold {
		b = 1
	}
	// fpdf's arithmetic for the width.
	fontSize := size / d.f.GetConversionRatio()
	wmax := int(math.Ceil((w - 2*d.f.GetCellMargin()) * 1000 / fontSize))
	if d.enc.codes == nil {
		// fpdf's UTF-8 fonts. Not fpdf's SplitText: it drops the character
		// at a break in CJK text and breaks at a no-break space (dropping
		// it too), and it counts a character the font lacks as no width,
		// though it is drawn as wide as the .notdef glyph.
		return splitRunes(text, d.faces[b], wmax, d.wrapLimit())
	}
	// A single-byte font: SplitText would read the codes as UTF-8, and
	// SplitLines copies the text twice. splitLines is SplitLines on the
	// text itself.
	return splitLines(text, d.widths[b], wmax, d.wrapLimit(), d.shyCode())
}

// shyCode is the code of the soft hyphen in the text of d's single-byte
// fonts, -1 when their encoding has none (the text has none then).
func (d *document) shyCode() int {
	if c, ok := d.enc.codes[softHyphen]; ok {
		return int(c)
	}
	return -1
}

// visible returns text, encoded by d.text, without its soft hyphens: a
// soft hyphen prints (as a hyphen) only at the end of a line that wrap
// breaks at it, so a text on one line, which is not wrapped, prints
// without them.
func (d *document) visible(text string) string {
	if d.enc.codes == nil {
		return stripShy(text, shyUTF8)
	}
	if c := d.shyCode(); c >= 0 {
		return stripShy(text, string([]byte{byte(c)}))
	}
	return text
}

// shyUTF8 is the soft hyphen in UTF-8 text (the utf8-cid path).
const shyUTF8 = string(softHyphen)

// stripShy returns s without the soft hyphen shy (its encoded form); s
// itself when it has none.
func stripShy(s, shy string) string {
	if !strings.Contains(s, shy) {
		return s
	}
	return strings.ReplaceAll(s, shy, "")
}

// wrapLimit is the most lines of one text that can be laid out within
// the page limit, plus one: every line of text takes lineH on a page
// whose content is at most contentLimit-contentTop high, so a text of
// more lines ends the layout at the limit whatever follows them.
func (d *document) wrapLimit() int {
	room := contentLimit - contentTop
	perPage := int(room / lineH)
	if d.maxPages >= math.MaxInt/perPage {
		return math.MaxInt
	}
	return d.maxPages*perPage + 1
}

// splitLines splits s into lines of at most wmax thousandths of an em in
// a font whose codes have the widths cw, breaking after the last space
// or soft hyphen (code shy, -1 for none) that fits, or inside a word
// longer than a line, and at every \n. It is fpdf's SplitLines, but for
// the soft hyphen: it takes no room on a line and is left out of it, but
// at the end of a line that breaks at it, where it prints as a hyphen.
// It returns substrings of s but for lines a soft hyphen is left out of,
// and stops after maxLines lines.
func splitLines(s string, cw *[256]int, wmax, maxLines, shy int) []string {
	nb := len(s)
	for nb > 0 && s[nb-1] == '\n' {
		nb--
	}
	s = s[:nb]
	shyText := ""
	if shy >= 0 {
		shyText = string([]byte{byte(shy)})
	}
	var lines []string
	sep, i, j, l := -1, 0, 0, 0
	hyphen := false  // the line breaks at a soft hyphen, at sep
	last := rune(-1) // the last character of the line but its soft hyphens, -1 for none
	for i < nb {
		c := s[i]
		if int(c) == shy {
			if l+cw[c] <= wmax && syllableEnd(last) {
				sep, hyphen = i, true
			}
			i++
			continue
		}
		last = rune(c)
		l += cw[c]
		if c == ' ' || c == '\t' || c == '\n' {
			sep, hyphen = i, false
		}
		if c == '\n' || l > wmax {
			if sep == -1 {
				if i == j {
					i++
				}
				sep = i
			} else {
				i = sep + 1
			}
			line := s[j:sep]
			if shyText != "" {
				if line = stripShy(line, shyText); hyphen {
					line += shyText
				}
			}
			if lines = append(lines, line); len(lines) == maxLines {
				return lines
			}
			sep, hyphen = -1, false
			j = i
			l = 0
			last = -1
		} else {
			i++
		}
	}
	if i != j {
		if line := s[j:i]; shyText != "" {
			lines = append(lines, stripShy(line, shyText))
		} else {
			lines = append(lines, line)
		}
	}
	return lines
}

// syllableEnd reports whether a line whose last character but its soft
// hyphens is last (-1 for none) ends in a syllable there: a character
// other than a space. A soft hyphen at the start of a line or after a
// space is no break point: breaking there printed a lone hyphen. The
// callers keep last as they go, so that a run of soft hyphens costs no
// look back over the run at each of them (which made the wrap quadratic
// in the run's length).
func syllableEnd(last rune) bool {
	return last >= 0 && last != ' ' && last != '\t' && last != '\n'
}

// splitRunes is splitLines for UTF-8 text in the face fc (fpdf's UTF-8
// fonts): it splits s into lines of at most wmax thousandths of an em,
// breaking after the last space or soft hyphen that fits, or between two
// characters of a word longer than a line, and at every \n. Only ' ',
// '\n' and the soft hyphen break a line, and only ' ' and '\n' are dropped
// at a break: no other character is lost, and a no-break space keeps its
// words together. A soft hyphen is left out of a line but at its end when
// the line breaks at it, as in splitLines. It returns substrings of s but
// for lines a soft hyphen is left out of, and stops after maxLines lines.
func splitRunes(s string, fc *face, wmax, maxLines int) []string {
	nb := len(s)
	for nb > 0 && s[nb-1] == '\n' {
		nb--
	}
	s = s[:nb]
	var lines []string
	sep, i, j, l := -1, 0, 0, 0
	hyphen := false  // the line breaks at a soft hyphen, at sep
	last := rune(-1) // the last character of the line but its soft hyphens, -1 for none
	for i < nb {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		if r == softHyphen {
			if l+fc.runeWidth(r) <= wmax && syllableEnd(last) {
				sep, hyphen = i, true
			}
			i += size
			continue
		}
		last = r
		l += fc.runeWidth(r)
		if r == ' ' || r == '\n' {
			sep, hyphen = i, false
		}
		if r == '\n' || l > wmax {
			if sep == -1 {
				if i == j {
					i += size // a line holds at least one character
				}
				sep = i
			} else if hyphen {
				i = sep + len(shyUTF8) // past the soft hyphen, which ends the line
			} else {
				i = sep + 1 // past the one-byte space or \n
			}
			line := stripShy(s[j:sep], shyUTF8)
			if hyphen {
				line += shyUTF8
			}
			if lines = append(lines, line); len(lines) == maxLines {
				return lines
			}
			sep, hyphen = -1, false
			j = i
			l = 0
			last = -1
		} else {
			i += size
		}
	}
	if i != j {
		lines = append(lines, stripShy(s[j:i], shyUTF8))
	}
	return lines
}
