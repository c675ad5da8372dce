package pdf

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"

	"github.com/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
)

// fontFamily is the name the embedded fonts are registered under.
const fontFamily = "go"

// The embedded TrueType fonts. The slices are package variables of the
// gofont packages, read once into the binary; nothing writes to them.
var (
	fontRegular = goregular.TTF
	fontBold    = gobold.TTF
)

// How the fonts get into a document.
//
// fpdf parses a UTF-8 font again for every document (its parsed form is
// private and mutated by writing the subset) and identifies it by a JSON
// encoding and SHA-1 of a 65,536-entry width table: milliseconds per
// document. So the renderer parses the fonts once per process itself
// (face) and gives fpdf single-byte TrueType fonts instead, through
// AddFontFromBytes: a small JSON definition (256 widths, the encoding's
// Differences) and a compressed font program, subset to the characters
// the document prints, which costs copying a few kilobytes (see
// subsetter).

// faces returns the parsed regular and bold faces.
var faces = sync.OnceValues(func() ([2]*face, error) {
	var fs [2]*face
	for i, ttf := range [][]byte{fontRegular, fontBold} {
		fc, err := parseFace(ttf, i == 1)
		if err != nil {
			return fs, fmt.Errorf("embedded font %d: %w", i, err)
		}
		for c := 0x20; c < 0x7F; c++ {
			fc.asciiWidths[c] = fc.missingWidth
			if g, ok := fc.glyphs[rune(c)]; ok {
				fc.asciiWidths[c] = g.width
			}
		}
		fc.codePageWidths = make(map[*encoding]*[256]int)
		for _, enc := range []*encoding{encCP1252, encCP1250} {
			fc.codePageWidths[enc] = fc.widths(enc)
		}
		fs[i] = fc
	}
	return fs, nil
})

// docFonts are the fonts added to one document.
type docFonts struct {
	// widths are the advances of the codes of the single-byte fonts,
	// regular and bold, in thousandths of an em; nil for FontPathUTF8CID.
	widths [2]*[256]int
	// faces are the parsed regular and bold faces for FontPathUTF8CID,
	// whose text wrap measures with them; nil on the other paths.
	faces [2]*face
	bufs  [2]*bytes.Buffer // the compressed font programs
}

// release returns pooled memory once the document has been written out.
func (d *docFonts) release() {
	for i, b := range d.bufs {
		if b != nil {
			putBuffer(b)
			d.bufs[i] = nil
		}
	}
}

// addFonts registers on f the regular and bold fonts for enc, subset to
// ASCII and used, the other characters the document prints.
func addFonts(f *fpdf.Fpdf, enc *encoding, used []rune) (*docFonts, error) {
	d := &docFonts{}
	styles := [2]string{"", "B"}
	fs, err := faces()
	if err != nil {
		return d, err
	}
	if enc.path == FontPathUTF8CID {
		f.AddUTF8FontFromBytes(fontFamily, styles[0], fontRegular)
		f.AddUTF8FontFromBytes(fontFamily, styles[1], fontBold)
		d.faces = fs
		return d, nil
	}
	def := getBuffer()
	defer putBuffer(def)
	for i, fc := range fs {
		d.widths[i] = fc.widths(enc)
		d.bufs[i] = getBuffer()
		size := fc.subsetter.subset(d.bufs[i], used)
		def.Reset()
		def.Write(fc.definition(def.AvailableBuffer(), enc, d.widths[i], used, size))
		f.AddFontFromBytes(fontFamily, styles[i], def.Bytes(), d.bufs[i].Bytes())
	}
	return d, nil
}

// Font descriptor flags (PDF 32000-1:2008, 9.8.2).
const (
	flagNonsymbolic = 1 << 5
	flagForceBold   = 1 << 18
)

// definition appends to b fpdf's JSON definition of fc as a single-byte
// TrueType font in enc, whose codes have widths, subset to used and size
// bytes long (fpdf's unexported fontDefType), and returns the extended
// slice.
func (fc *face) definition(b []byte, enc *encoding, widths *[256]int, used []rune, size int) []byte {
	// Nonsymbolic: a reader maps each code through the encoding's glyph
	// name to Unicode and finds the glyph in the font's Unicode cmap.
	flags := flagNonsymbolic
	if fc.bold {
		flags |= flagForceBold
	}
	b = append(b, `{"Tp":"TrueType","Name":"`...)
	tag := fc.subsetTag(used)
	b = append(b, tag[:]...)
	b = append(b, '+')
	b = append(b, fc.psName...)
	b = fmt.Appendf(b, `","Desc":{"Ascent":%d,"Descent":%d,"CapHeight":%d,"Flags":%d,`+
		`"FontBBox":{"Xmin":%d,"Ymin":%d,"Xmax":%d,"Ymax":%d},"ItalicAngle":%d,"StemV":%d,"MissingWidth":%d},`+
		`"Up":%d,"Ut":%d,"Cw":[`,
		fc.ascent, fc.descent, fc.capHeight, flags, fc.bbox[0], fc.bbox[1], fc.bbox[2], fc.bbox[3],
		fc.italicAngle, fc.stemV, fc.missingWidth, fc.underlinePos, fc.underlineW)
	for c, w := range widths {
		if c > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(w), 10)
	}
	// The names in Diff and File are printable ASCII without quotes or
	// backslashes: nothing to escape. File only has to end in ".z" (a
	// compressed program) and differ between the two weights.
	b = append(b, `],"Enc":"`...)
	b = append(b, enc.path...)
	b = append(b, `","Diff":"`...)
	b = append(b, enc.diff...)
	b = append(b, `","File":"`...)
	b = append(b, fc.psName...)
	b = append(b, `.z","OriginalSize":`...)
	b = strconv.AppendInt(b, int64(size), 10)
	return append(b, '}')
}

// widths returns the advance of every code of enc in fc, in thousandths
// of an em: made once for the code pages, per document otherwise.
func (fc *face) widths(enc *encoding) *[256]int {
	if w, ok := fc.codePageWidths[enc]; ok {
		return w
	}
	w := fc.asciiWidths // every encoding keeps ASCII's codes
	for c, r := range enc.runes[0x7F:] {
		c += 0x7F
		if r == 0 {
			continue
		}
		if g, ok := fc.glyphs[r]; ok {
			w[c] = g.width
		} else {
			w[c] = fc.missingWidth
		}
	}
	return &w
}

// differences returns the Differences array (fpdf's syntax, without the
// brackets) that turns WinAnsiEncoding into e: glyph names for the codes
// where the two differ. The names are uniXXXX, which every reader maps to
// the rune without a table of names.
func (e *encoding) differences() string {
	var b []byte
	next := -1 // the code a name without a number would get
	for c := 0x80 - 1; c < 256; c++ {
		r := e.runes[c]
		if r == 0 || winAnsi(byte(c)) == r {
			continue
		}
		if c != next {
			b = strconv.AppendInt(b, int64(c), 10)
			b = append(b, ' ')
		}
		const hex = "0123456789ABCDEF"
		b = append(b, "/uni"...)
		b = append(b, hex[r>>12&0xF], hex[r>>8&0xF], hex[r>>4&0xF], hex[r&0xF], ' ')
		next = c + 1
	}
	return string(bytes.TrimSpace(b))
}

// winAnsi returns the rune of code c (0x7F or more) in PDF's
// WinAnsiEncoding: Windows-1252, except that it reads the no-break space
// as a space and the soft hyphen as a hyphen.
func winAnsi(c byte) rune {
	switch c {
	case 0x7F:
		return 0
	case 0xA0:
		return ' '
	case 0xAD:
		return '-'
	}
	return cp1252[c-0x80]
}

// subsetTag is the six uppercase letters that name the subset of fc
// with the glyphs of used (and ASCII): the same characters always give
// the same tag.
func (fc *face) subsetTag(used []rune) [6]byte {
	h := fnv.New64a()
	h.Write([]byte(fc.psName))
	for _, r := range used {
		h.Write([]byte{byte(r >> 16), byte(r >> 8), byte(r)})
	}
	sum := h.Sum64()
	var tag [6]byte
	for i := range tag {
		tag[i] = 'A' + byte(sum%26)
		sum /= 26
	}
	return tag
}
