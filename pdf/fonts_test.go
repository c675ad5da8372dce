package pdf

import (
	"encoding/json"
	"regexp"
	"testing"
)

func TestFontDefinition(t *testing.T) {
	t.Parallel()
	fs, err := faces()
	if err != nil {
		t.Fatal(err)
	}
	// The fields of fpdf's fontDefType that the definition sets.
	type def struct {
		Tp, Name, Enc, Diff, File string
		Up, Ut, OriginalSize      int
		Cw                        []int
		Desc                      struct {
			Ascent, Descent, CapHeight, Flags, ItalicAngle, StemV, MissingWidth int
			FontBBox                                                            struct{ Xmin, Ymin, Xmax, Ymax int }
		}
	}
	for _, enc := range []*encoding{encCP1252, encCP1250, documentEncoding([]rune("ΩЖ€"))} {
		for _, fc := range fs {
			widths := fc.widths(enc)
			var d def
			if err := json.Unmarshal(fc.definition(nil, enc, widths, []rune("Ω"), 1234), &d); err != nil {
				t.Fatalf("%s %s: %v", enc.path, fc.psName, err)
			}
			if d.Tp != "TrueType" || d.Enc != string(enc.path) || d.Diff != enc.diff || d.OriginalSize != 1234 {
				t.Errorf("%s %s: definition %+v", enc.path, fc.psName, d)
			}
			if !regexp.MustCompile(`^[A-Z]{6}\+` + fc.psName + `$`).MatchString(d.Name) {
				t.Errorf("%s %s: name %q is not a subset name", enc.path, fc.psName, d.Name)
			}
			if len(d.Cw) != 256 || d.Cw['A'] != fc.glyphs['A'].width || d.Cw[0] != 0 {
				t.Errorf("%s %s: widths %v", enc.path, fc.psName, d.Cw)
			}
			for c, r := range enc.runes {
				if g, ok := fc.glyphs[r]; ok && d.Cw[c] != g.width {
					t.Errorf("%s %s: width of code %#x (%q) %d, want %d", enc.path, fc.psName, c, r, d.Cw[c], g.width)
				}
			}
			if d.Desc.Flags&flagNonsymbolic == 0 || d.Desc.Ascent <= 0 || d.Desc.Descent >= 0 || d.Desc.FontBBox.Xmax <= 0 {
				t.Errorf("%s %s: descriptor %+v", enc.path, fc.psName, d.Desc)
			}
		}
	}
	if encCP1252.diff != "160 /uni00A0 173 /uni00AD" {
		t.Errorf("cp1252 differences %q", encCP1252.diff)
	}
	if got := documentEncoding([]rune("ΩЖ€")).diff; got != "127 /uni03A9 /uni0416 /uni20AC" {
		t.Errorf("document differences %q", got)
	}
}
