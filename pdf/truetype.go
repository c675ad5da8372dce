package pdf

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"golang.org/x/image/font/sfnt"
)

// face is one embedded TrueType font, parsed once per process and read
// concurrently by every render after that. Metrics are in thousandths of
// an em, the unit of PDF font dictionaries.
type face struct {
	psName string // PostScript name, e.g. "GoRegular"
	bold   bool

	tables    []ttTable // the font's tables, sorted by tag
	glyf      []byte    // the glyf table
	loca      []uint32  // glyph data offsets into glyf, numGlyphs+1 of them
	locaLong  bool      // loca holds 32-bit offsets (else 16-bit halves)
	numGlyphs int

	glyphs     map[rune]glyph      // every rune the font maps to a glyph
	components map[uint16][]uint16 // composite glyph → all glyphs it uses

	ascent, descent, capHeight int
	bbox                       [4]int // xMin, yMin, xMax, yMax
	italicAngle                int
	stemV                      int
	underlinePos, underlineW   int
	missingWidth               int // advance of the .notdef glyph

	subsetter      *subsetter
	codePageWidths map[*encoding]*[256]int // widths of the code pages' codes
	asciiWidths    [256]int                // widths of printable ASCII, 0 elsewhere
}

// glyph is what a document needs to know of one character of a face.
type glyph struct {
	id    uint16
	width int // advance in thousandths of an em
}

// ttTable is one table of a TrueType font.
type ttTable struct {
	tag  string
	data []byte
}

// parseFace reads the TrueType font ttf. bold marks the bold weight (for
// the font descriptor's flags).
func parseFace(ttf []byte, bold bool) (*face, error) {
	fc := &face{bold: bold}
	if err := fc.readTables(ttf); err != nil {
		return nil, err
	}
	for _, tag := range []string{"cmap", "glyf", "head", "hhea", "hmtx", "loca", "maxp", "post", "OS/2"} {
		if fc.table(tag) == nil {
			return nil, fmt.Errorf("truetype: no %s table", tag)
		}
	}
	head, hhea, hmtx := fc.table("head"), fc.table("hhea"), fc.table("hmtx")
	maxp, post, os2 := fc.table("maxp"), fc.table("post"), fc.table("OS/2")
	if len(head) < 54 || len(hhea) < 36 || len(maxp) < 6 || len(post) < 32 || len(os2) < 8 {
		return nil, fmt.Errorf("truetype: short head, hhea, maxp, post or OS/2 table")
	}
	upem := float64(be16(head, 18))
	if upem == 0 {
		return nil, fmt.Errorf("truetype: zero units per em")
	}
	scale := func(v int) int { return int(math.Round(float64(v) * 1000 / upem)) }

	fc.numGlyphs = int(be16(maxp, 4))
	fc.locaLong = be16(head, 50) == 1
	if err := fc.readLoca(); err != nil {
		return nil, err
	}
	fc.bbox = [4]int{scale(int(int16(be16(head, 36)))), scale(int(int16(be16(head, 38)))),
		scale(int(int16(be16(head, 40)))), scale(int(int16(be16(head, 42))))}
	fc.ascent = scale(int(int16(be16(hhea, 4))))
	fc.descent = scale(int(int16(be16(hhea, 6))))
	fc.capHeight = fc.ascent
	if be16(os2, 0) >= 2 && len(os2) >= 90 {
		fc.capHeight = scale(int(int16(be16(os2, 88))))
	}
	weight := float64(be16(os2, 4))
	fc.stemV = 50 + int(math.Pow(weight/65, 2))
	fc.italicAngle = int(int16(be16(post, 4)))
	fc.underlinePos = scale(int(int16(be16(post, 8))))
	fc.underlineW = scale(int(int16(be16(post, 10))))

	numHMetrics := int(be16(hhea, 34))
	if numHMetrics == 0 || len(hmtx) < 4*numHMetrics {
		return nil, fmt.Errorf("truetype: short hmtx table")
	}
	advance := func(gid uint16) int {
		i := min(int(gid), numHMetrics-1)
		return scale(int(be16(hmtx, 4*i)))
	}
	fc.missingWidth = advance(0)

	sf, err := sfnt.Parse(ttf)
	if err != nil {
		return nil, fmt.Errorf("truetype: %w", err)
	}
	var buf sfnt.Buffer
	if fc.psName, err = sf.Name(&buf, sfnt.NameIDPostScript); err != nil {
		return nil, fmt.Errorf("truetype: postscript name: %w", err)
	}
	// The name goes into PDF names and fpdf's JSON as it is.
	fc.psName = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return -1
	}, fc.psName)
	fc.glyphs = make(map[rune]glyph)
	for r := rune(0x20); r <= 0xFFFF; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		gid, err := sf.GlyphIndex(&buf, r)
		if err != nil || gid == 0 || int(gid) >= fc.numGlyphs {
			continue
		}
		fc.glyphs[r] = glyph{id: uint16(gid), width: advance(uint16(gid))}
	}
	fc.slimTables()
	fc.components = make(map[uint16][]uint16)
	for gid := range fc.numGlyphs {
		if c := fc.closure(uint16(gid)); len(c) > 0 {
			fc.components[uint16(gid)] = c
		}
	}
	fc.subsetter = newSubsetter(fc)
	return fc, nil
}

// readTables reads the table directory of ttf.
func (fc *face) readTables(ttf []byte) error {
	if len(ttf) < 12 || be32(ttf, 0) != 0x00010000 {
		return fmt.Errorf("truetype: not a TrueType font")
	}
	n := int(be16(ttf, 4))
	if len(ttf) < 12+16*n {
		return fmt.Errorf("truetype: short table directory")
	}
	for i := range n {
		rec := ttf[12+16*i:]
		off, length := int(be32(rec, 8)), int(be32(rec, 12))
		if off < 0 || length < 0 || off+length > len(ttf) {
			return fmt.Errorf("truetype: table %q out of bounds", rec[:4])
		}
		t := ttTable{tag: string(rec[:4]), data: ttf[off : off+length]}
		if i > 0 && fc.tables[i-1].tag >= t.tag {
			return fmt.Errorf("truetype: tables not sorted by tag")
		}
		fc.tables = append(fc.tables, t)
	}
	fc.glyf = fc.table("glyf")
	return nil
}

// slimTables drops from the tables a subset copies what a PDF reader does
// not use: the glyph names of post (a reader finds a glyph through the
// encoding's uniXXXX names and the Unicode cmap) and the name records
// beyond the copyright, family, style, unique, full and PostScript names
// and the version (the license text, URLs, descriptions).
func (fc *face) slimTables() {
	for i, t := range fc.tables {
		switch t.tag {
		case "post":
			post := append([]byte(nil), t.data[:32]...)
			binary.BigEndian.PutUint32(post, 0x00030000) // no glyph names
			fc.tables[i].data = post
		case "name":
			if name, ok := slimName(t.data); ok {
				fc.tables[i].data = name
			}
		}
	}
}

// slimName returns the format 0 name table data with the records of
// name IDs 0 to 6 only.
func slimName(data []byte) ([]byte, bool) {
	if len(data) < 6 || be16(data, 0) != 0 {
		return nil, false
	}
	count, storage := int(be16(data, 2)), int(be16(data, 4))
	if len(data) < 6+12*count || storage > len(data) {
		return nil, false
	}
	var records, strs []byte
	for i := range count {
		rec := data[6+12*i : 18+12*i]
		length, off := int(be16(rec, 8)), int(be16(rec, 10))
		if be16(rec, 6) > 6 {
			continue
		}
		if storage+off+length > len(data) {
			return nil, false
		}
		r := append([]byte(nil), rec...)
		binary.BigEndian.PutUint16(r[10:], uint16(len(strs)))
		records = append(records, r...)
		strs = append(strs, data[storage+off:storage+off+length]...)
	}
	out := make([]byte, 6, 6+len(records)+len(strs))
	binary.BigEndian.PutUint16(out[2:], uint16(len(records)/12))
	binary.BigEndian.PutUint16(out[4:], uint16(6+len(records)))
	return append(append(out, records...), strs...), true
}

// readLoca reads the glyph offsets.
func (fc *face) readLoca() error {
	loca := fc.table("loca")
	size := 2
	if fc.locaLong {
		size = 4
	}
	if len(loca) < size*(fc.numGlyphs+1) {
		return fmt.Errorf("truetype: short loca table")
	}
	fc.loca = make([]uint32, fc.numGlyphs+1)
	for i := range fc.loca {
		if fc.locaLong {
			fc.loca[i] = be32(loca, 4*i)
		} else {
			fc.loca[i] = 2 * uint32(be16(loca, 2*i))
		}
		if int(fc.loca[i]) > len(fc.glyf) || i > 0 && fc.loca[i] < fc.loca[i-1] {
			return fmt.Errorf("truetype: bad loca entry %d", i)
		}
	}
	return nil
}

// table returns the data of the table tag, or nil.
func (fc *face) table(tag string) []byte {
	for _, t := range fc.tables {
		if t.tag == tag {
			return t.data
		}
	}
	return nil
}

// glyphData returns the outline of glyph gid.
func (fc *face) glyphData(gid uint16) []byte {
	return fc.glyf[fc.loca[gid]:fc.loca[gid+1]]
}

// closure returns every glyph the composite glyph gid is built from,
// directly or through other composites; nil for a simple glyph.
func (fc *face) closure(gid uint16) []uint16 {
	var out []uint16
	seen := map[uint16]bool{gid: true}
	todo := []uint16{gid}
	for len(todo) > 0 {
		g := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, c := range fc.directComponents(g) {
			if !seen[c] && int(c) < fc.numGlyphs {
				seen[c] = true
				out = append(out, c)
				todo = append(todo, c)
			}
		}
	}
	return out
}

// Flags of a composite glyph's component records.
const (
	compArgsAreWords = 0x0001
	compHaveScale    = 0x0008
	compMore         = 0x0020
	compHaveXYScale  = 0x0040
	compHave2x2      = 0x0080
)

// directComponents lists the glyphs a composite glyph refers to.
func (fc *face) directComponents(gid uint16) []uint16 {
	data := fc.glyphData(gid)
	if len(data) < 10 || int16(be16(data, 0)) >= 0 {
		return nil
	}
	var out []uint16
	for p := 10; p+4 <= len(data); {
		flags := be16(data, p)
		out = append(out, be16(data, p+2))
		p += 4
		if flags&compArgsAreWords != 0 {
			p += 4
		} else {
			p += 2
		}
		switch {
		case flags&compHaveScale != 0:
			p += 2
		case flags&compHaveXYScale != 0:
			p += 4
		case flags&compHave2x2 != 0:
			p += 8
		}
		if flags&compMore == 0 {
			break
		}
	}
	return out
}

// checksum is the TrueType table checksum of b, whose length is a
// multiple of four.
func checksum(b []byte) uint32 {
	var sum uint32
	for i := 0; i+4 <= len(b); i += 4 {
		sum += binary.BigEndian.Uint32(b[i:])
	}
	return sum
}

func pad4(n int) int { return (n + 3) &^ 3 }

func be16(b []byte, i int) uint16 { return binary.BigEndian.Uint16(b[i:]) }

func be32(b []byte, i int) uint32 { return binary.BigEndian.Uint32(b[i:]) }

// runeWidth returns the advance of r in fc, in thousandths of an em: that
// of its glyph or, for a rune fc lacks, of the .notdef glyph, which fpdf's
// UTF-8 fonts draw it with.
func (fc *face) runeWidth(r rune) int {
	if g, ok := fc.glyphs[r]; ok {
		return g.width
	}
	return fc.missingWidth
}
