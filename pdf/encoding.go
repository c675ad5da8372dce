package pdf

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// FontPath names how a document's text is encoded and which fonts carry
// it; [Render] reports the one it took in [Result.FontPath], a short
// lowercase word fit for a metric label. Every path embeds the same Go
// fonts, so the documents look the same on all of them.
type FontPath string

const (
	// FontPathCP1252 is taken when all text is in Windows-1252 (Western
	// European: English, German, French, Spanish, Nordic, ...). The fonts
	// are single-byte TrueType fonts in PDF's WinAnsiEncoding (with the
	// no-break space and the soft hyphen as themselves), subset to the
	// document's characters.
	FontPathCP1252 FontPath = "cp1252"
	// FontPathCP1250 is taken when all text is in Windows-1250 (Central
	// European: Polish, Czech, Slovak, Hungarian, Slovenian, Croatian,
	// and German) but not in Windows-1252. Like FontPathCP1252, in the
	// cp1250 encoding.
	FontPathCP1250 FontPath = "cp1250"
	// FontPathUTF8 is taken for other text, such as Greek or Cyrillic
	// mixed with Latin, of at most 129 distinct non-ASCII characters. Like
	// FontPathCP1252, in a single-byte encoding made for the document.
	FontPathUTF8 FontPath = "utf8"
	// FontPathUTF8CID is taken for text of more distinct characters than
	// FontPathUTF8 holds: fpdf's UTF-8 (CID-keyed) fonts, which fpdf
	// parses again for every document: an order of magnitude slower than the
	// other paths.
	FontPathUTF8CID FontPath = "utf8-cid"
)

// maxDocumentRunes is how many distinct non-ASCII characters a
// FontPathUTF8 document can hold: ASCII keeps its codes (so fixed labels,
// digits and the page count need no translation) and codes 127-255 go to
// the document's other characters.
const maxDocumentRunes = 256 - firstDocumentCode

// firstDocumentCode is the first code a FontPathUTF8 encoding assigns.
const firstDocumentCode = 0x7F

// encoding maps a document's text to the byte codes of its fonts.
type encoding struct {
	path FontPath
	// codes maps each non-ASCII rune to its code; nil for FontPathUTF8CID,
	// whose text stays UTF-8.
	codes map[rune]byte
	// runes is the rune of every code, zero where a code has none.
	runes [256]rune
	// extra lists the non-ASCII runes, in code order.
	extra []rune
	// diff is the Differences array that makes WinAnsiEncoding this
	// encoding (see differences).
	diff string
}

// The code page encodings, read-only after package initialization.
var (
	encCP1252 = codePageEncoding(FontPathCP1252, &cp1252)
	encCP1250 = codePageEncoding(FontPathCP1250, &cp1250)
	encCID    = &encoding{path: FontPathUTF8CID}
)

// codePageEncoding returns the encoding of a code page whose upper half
// is upper.
func codePageEncoding(path FontPath, upper *[128]rune) *encoding {
	e := &encoding{path: path, codes: make(map[rune]byte)}
	e.setASCII()
	for i, r := range upper {
		if r != 0 {
			e.codes[r] = byte(0x80 + i)
			e.runes[0x80+i] = r
			e.extra = append(e.extra, r)
		}
	}
	e.diff = e.differences()
	return e
}

// documentEncoding returns an encoding that gives codes from
// firstDocumentCode on to runes, which are sorted and at most
// maxDocumentRunes.
func documentEncoding(runes []rune) *encoding {
	e := &encoding{path: FontPathUTF8, codes: make(map[rune]byte, len(runes)), extra: runes}
	e.setASCII()
	for i, r := range runes {
		e.codes[r] = byte(firstDocumentCode + i)
		e.runes[firstDocumentCode+i] = r
	}
	e.diff = e.differences()
	return e
}

// setASCII gives printable ASCII its own codes.
func (e *encoding) setASCII() {
	for c := 0x20; c < 0x7F; c++ {
		e.runes[c] = rune(c)
	}
}

// has reports whether the encoding holds every rune of set.
func (e *encoding) has(set map[rune]struct{}) bool {
	for r := range set {
		if _, ok := e.codes[r]; !ok {
			return false
		}
	}
	return true
}

// chooseEncoding picks the encoding of inv's text: the first code page
// that holds every character, else a document encoding, else UTF-8. A
// character is never dropped or replaced to fit a code page. It also
// returns the non-ASCII characters the document prints, sorted, and the
// characters of inv it prints as U+FFFD because no font path carries
// them, those outside the Basic Multilingual Plane (cleanRune), sorted.
// It reads every character of the invoice (text of any length), checking
// ctx every composeCheckBytes, and once ctx is done returns an error
// wrapping ctx.Err().
func chooseEncoding(ctx context.Context, inv Invoice) (*encoding, []rune, []rune, error) {
	set := make(map[rune]struct{})
	var astral map[rune]struct{}
	cc := composer{ctx: ctx}
	add := func(s string) {
		for len(s) > 0 && cc.check(0) {
			n := min(len(s), composeCheckBytes)
			for n < len(s) && !utf8.RuneStart(s[n]) {
				n++ // a chunk ends between two characters
			}
			addNonASCII(set, &astral, s[:n])
			s = s[n:]
			cc.check(n)
		}
	}
	c := inv.Customer
	for _, s := range []string{inv.TenantName, inv.Number, inv.Status, inv.Currency,
		c.Name, c.Company, c.Email, c.Address, inv.Notes} {
		add(s)
	}
	for _, l := range inv.Lines {
		add(l.Description)
	}
	if cc.err != nil {
		return nil, nil, nil, fmt.Errorf("choose encoding: %w", cc.err)
	}

	used, replaced := sortedRunes(set), sortedRunes(astral)
	switch {
	case encCP1252.has(set):
		return encCP1252, used, replaced, nil
	case encCP1250.has(set):
		return encCP1250, used, replaced, nil
	case len(set) <= maxDocumentRunes:
		return documentEncoding(used), used, replaced, nil
	default:
		return encCID, used, replaced, nil
	}
}

// sortedRunes returns the runes of set in ascending order.
func sortedRunes(set map[rune]struct{}) []rune {
	rs := make([]rune, 0, len(set))
	for r := range set {
		rs = append(rs, r)
	}
	slices.Sort(rs)
	return rs
}

// addNonASCII adds to set the characters of s that print as non-ASCII
// (cleanRune's), skipping the run of printable ASCII s starts with, and to
// *astral (made when first needed) those of s outside the Basic
// Multilingual Plane, which print as U+FFFD.
func addNonASCII(set map[rune]struct{}, astral *map[rune]struct{}, s string) {
	for i := range len(s) {
		if c := s[i]; c >= 0x20 && c < 0x7F || c == '\t' || c == '\n' || c == '\r' {
			continue // stays ASCII
		}
		for _, r := range s[i:] {
			if r > 0xFFFF {
				if *astral == nil {
					*astral = make(map[rune]struct{})
				}
				(*astral)[r] = struct{}{}
			}
			if r = cleanRune(r, false); r >= 0x80 {
				set[r] = struct{}{}
			}
		}
		return
	}
}

// text cleans s as cleanText does and encodes it. It reports false when
// s has a character the encoding lacks, which chooseEncoding rules out.
func (e *encoding) text(s string, multiline bool) (string, bool) {
	if printableASCII(s) {
		return s, true
	}
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range s {
		if r == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			continue // \r\n is one line break
		}
		switch r = cleanRune(r, multiline); {
		case r < 0:
			// left out
		case r < 0x80:
			b.WriteByte(byte(r))
		case e.codes == nil:
			b.WriteRune(r)
		default:
			c, ok := e.codes[r]
			if !ok {
				return "", false
			}
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// printableASCII reports whether s is printable ASCII only, which every
// encoding and cleanText keep as it is.
func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] >= 0x7F {
			return false
		}
	}
	return true
}

// cleanRune is the rune cleanText writes for r (see there), negative for
// one it leaves out; \r\n has been
// made one \n before.
func cleanRune(r rune, multiline bool) rune {
	switch {
	case r == '\n' || r == '\r':
		if multiline {
			return '\n'
		}
		return ' '
	case r == '\t':
		return ' '
	case r == unicode.ReplacementChar, r > 0xFFFF, unicode.IsControl(r),
		r >= 0xD800 && r <= 0xDFFF:
		return unicode.ReplacementChar
	case r != softHyphen && unicode.Is(unicode.Cf, r):
		return -1 // invisible: left out
	}
	return r
}

// softHyphen is the one format character the fonts draw (where a line
// breaks inside a word); the others are left out of the document.
const softHyphen = '\u00AD'
