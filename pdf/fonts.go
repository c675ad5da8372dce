package pdf

import (
	"github.com/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
)

// fontFamily is the name the embedded fonts are registered under.
const fontFamily = "go"

// The embedded TrueType fonts. The slices are package variables of the
// gofont packages, read once into the binary; fpdf only reads them.
//
// fpdf parses a UTF-8 font again for every document and offers no way to
// hand a parsed font to another document: its parsed form is private, and
// writing the subset mutates it, so it could not be shared between
// concurrent renders anyway.
var (
	fontRegular = goregular.TTF
	fontBold    = gobold.TTF
)

// registerFonts adds the embedded fonts to f: "" (regular) and "B" (bold).
func registerFonts(f *fpdf.Fpdf) {
	f.AddUTF8FontFromBytes(fontFamily, "", fontRegular)
	f.AddUTF8FontFromBytes(fontFamily, "B", fontBold)
}
