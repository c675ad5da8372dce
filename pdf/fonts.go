package pdf

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
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
// Differences) and a font program already compressed. For the code pages
// both are made once per process; for a document encoding (FontPathUTF8)
// the font is subset to the document's characters, which costs copying a
// few kilobytes (see subsetter).

// faces returns the parsed regular and bold faces.
var faces = sync.OnceValues(func() ([2]*face, error) {
	var fs [2]*face
	for i, ttf := range [][]byte{fontRegular, fontBold} {
		fc, err := parseFace(ttf, i == 1)
		if err != nil {
			return fs, fmt.Errorf("embedded font %d: %w", i, err)
		}
		fs[i] = fc
	}
	return fs, nil
})

// fontProgram is one font as fpdf's AddFontFromBytes takes it.
type fontProgram struct {
	def  []byte // JSON font definition
	file []byte // zlib-compressed font program
}

// codePageFonts returns the regular and bold fonts of the code page
// encodings, made once per process.
var codePageFonts = sync.OnceValues(func() (map[FontPath][2]fontProgram, error) {
	fs, err := faces()
	if err != nil {
		return nil, err
	}
	out := make(map[FontPath][2]fontProgram)
	for _, enc := range []*encoding{encCP1252, encCP1250} {
		var ps [2]fontProgram
		for i, fc := range fs {
			var sub bytes.Buffer
			fc.subsetter.subset(&sub, enc.runes[:])
			z, size, err := recompress(sub.Bytes())
			if err != nil {
				return nil, err
			}
			def, err := fc.definition(enc, size)
			if err != nil {
				return nil, err
			}
			ps[i] = fontProgram{def: def, file: z}
		}
		out[enc.path] = ps
	}
	return out, nil
})

// recompress inflates the zlib stream z and deflates it again at the best
// compression, for a font made once per process; it returns the stream
// and its length uncompressed.
func recompress(z []byte) ([]byte, int, error) {
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, 0, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, 0, err
	}
	var out bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&out, zlib.BestCompression) // the level is valid
	zw.Write(raw)                                            // a bytes.Buffer does not fail
	zw.Close()
	return out.Bytes(), len(raw), nil
}

// addFonts registers the regular and bold fonts for enc on f. The
// returned function releases pooled memory once f has been written out.
func addFonts(f *fpdf.Fpdf, enc *encoding) (release func(), err error) {
	release = func() {}
	styles := [2]string{"", "B"}
	switch enc.path {
	case FontPathUTF8CID:
		f.AddUTF8FontFromBytes(fontFamily, styles[0], fontRegular)
		f.AddUTF8FontFromBytes(fontFamily, styles[1], fontBold)
		return release, nil
	case FontPathCP1252, FontPathCP1250:
		fonts, err := codePageFonts()
		if err != nil {
			return release, err
		}
		for i, p := range fonts[enc.path] {
			f.AddFontFromBytes(fontFamily, styles[i], p.def, p.file)
		}
		return release, nil
	}

	fs, err := faces()
	if err != nil {
		return release, err
	}
	var bufs []*bytes.Buffer
	release = func() {
		for _, b := range bufs {
			putBuffer(b)
		}
	}
	for i, fc := range fs {
		z := getBuffer()
		bufs = append(bufs, z)
		size := fc.subsetter.subset(z, enc.extra)
		def, err := fc.definition(enc, size)
		if err != nil {
			return release, err
		}
		f.AddFontFromBytes(fontFamily, styles[i], def, z.Bytes())
	}
	return release, nil
}

// fontDef is fpdf's JSON font definition (its unexported fontDefType).
type fontDef struct {
	Tp           string
	Name         string
	Desc         fontDesc
	Up           int
	Ut           int
	Cw           [256]int
	Enc          string
	Diff         string
	File         string
	OriginalSize int
}

// fontDesc is fpdf's FontDescType.
type fontDesc struct {
	Ascent       int
	Descent      int
	CapHeight    int
	Flags        int
	FontBBox     struct{ Xmin, Ymin, Xmax, Ymax int }
	ItalicAngle  int
	StemV        int
	MissingWidth int
}

// Font descriptor flags (PDF 32000-1:2008, 9.8.2).
const (
	flagNonsymbolic = 1 << 5
	flagForceBold   = 1 << 18
)

// definition returns fpdf's JSON definition of fc as a single-byte
// TrueType font in enc, whose subset font program is size bytes long.
func (fc *face) definition(enc *encoding, size int) ([]byte, error) {
	d := fontDef{
		Tp:           "TrueType",
		Name:         fc.subsetTag(enc) + "+" + fc.psName,
		Up:           fc.underlinePos,
		Ut:           fc.underlineW,
		Enc:          string(enc.path),
		Diff:         fc.differences(enc),
		File:         fc.psName + "-" + string(enc.path) + ".z", // ".z": compressed
		OriginalSize: size,
	}
	// Nonsymbolic: a reader maps each code through the encoding's glyph
	// name to Unicode and finds the glyph in the font's Unicode cmap.
	d.Desc = fontDesc{Ascent: fc.ascent, Descent: fc.descent, CapHeight: fc.capHeight,
		Flags: flagNonsymbolic, ItalicAngle: fc.italicAngle, StemV: fc.stemV, MissingWidth: fc.missingWidth}
	if fc.bold {
		d.Desc.Flags |= flagForceBold
	}
	d.Desc.FontBBox.Xmin, d.Desc.FontBBox.Ymin = fc.bbox[0], fc.bbox[1]
	d.Desc.FontBBox.Xmax, d.Desc.FontBBox.Ymax = fc.bbox[2], fc.bbox[3]
	for c, r := range enc.runes {
		if r == 0 {
			continue
		}
		if g, ok := fc.glyphs[r]; ok {
			d.Cw[c] = g.width
		} else {
			d.Cw[c] = fc.missingWidth
		}
	}
	return json.Marshal(d)
}

// differences returns the Differences array (fpdf's syntax, without the
// brackets) that turns WinAnsiEncoding into enc: glyph names for the
// codes where the two differ. The names are uniXXXX, which every reader
// maps to the rune without a table of names.
func (fc *face) differences(enc *encoding) string {
	var b []byte
	next := -1 // the code a name without a number would get
	for c := 0x80 - 1; c < 256; c++ {
		r := enc.runes[c]
		if r == 0 || winAnsi(byte(c)) == r {
			continue
		}
		if c != next {
			b = fmt.Appendf(b, "%d ", c)
		}
		b = fmt.Appendf(b, "/uni%04X ", r)
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

// subsetTag is the six uppercase letters that name the subset of fc a
// document in enc embeds: the same characters always give the same tag.
func (fc *face) subsetTag(enc *encoding) string {
	h := fnv.New64a()
	h.Write([]byte(fc.psName))
	for _, r := range enc.extra {
		h.Write([]byte{byte(r >> 16), byte(r >> 8), byte(r)})
	}
	sum := h.Sum64()
	tag := make([]byte, 6)
	for i := range tag {
		tag[i] = 'A' + byte(sum%26)
		sum /= 26
	}
	return string(tag)
}
