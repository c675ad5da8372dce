package pdf

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

func TestRenderFontPaths(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		inv     Invoice
		want    FontPath
		texts   []string // printed, each as written
		font    string   // what the PDF's font dictionaries say
		missing []rune   // Result.Missing
	}{
		{
			name:  "Western European",
			inv:   invoiceWith("Müller & Söhne GmbH", "Zoë Müller", "Größe XL – Kaffee für 5 € • café"),
			want:  FontPathCP1252,
			texts: []string{"Müller & Söhne GmbH", "Zoë Müller", "Größe XL – Kaffee für 5 € • café"},
			font:  "/BaseEncoding /WinAnsiEncoding /Differences [160 /uni00A0 173 /uni00AD]",
		},
		{
			name:  "Central European",
			inv:   invoiceWith("Łódź Software sp. z o.o.", "Zoë Müller", "Zażółć gęślą jaźń – 5 €"),
			want:  FontPathCP1250,
			texts: []string{"Łódź Software sp. z o.o.", "Zoë Müller", "Zażółć gęślą jaźń – 5 €"},
			font:  "/Differences [",
		},
		{
			name:  "Greek, Cyrillic, Polish, Danish",
			inv:   invoiceWith("Acme Ωmega Łódź", "Αλέξης Παπαδόπουλος", "ООО Ромашка – Ærøskøbing"),
			want:  FontPathUTF8,
			texts: []string{"Acme Ωmega Łódź", "Αλέξης Παπαδόπουλος", "ООО Ромашка – Ærøskøbing"},
			font:  "/Differences [",
		},
		{
			// The Go fonts have no CJK glyphs: the characters print as
			// .notdef boxes, as with fpdf's UTF-8 fonts, but read back.
			name:    "characters the fonts lack",
			inv:     invoiceWith("Acme 東京", "山田太郎", "Łódź"),
			want:    FontPathUTF8,
			texts:   []string{"Acme 東京", "山田太郎", "Łódź"},
			font:    "/Differences [",
			missing: []rune("京太山東田郎"), // in code point order
		},
		{
			name:    "more characters than a document encoding holds",
			inv:     invoiceWith("Acme Ωmega Łódź", manyRunes(maxDocumentRunes+10), "ООО Ромашка"),
			want:    FontPathUTF8CID,
			texts:   []string{"Acme Ωmega Łódź", "ООО Ромашка"},
			font:    "/Subtype /Type0",
			missing: []rune("ѠѡѢ"), // historic Cyrillic: not in the Go fonts
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc, res := renderResult(t, Renderer{}, tt.inv)
			if res.FontPath != tt.want {
				t.Fatalf("font path %s, want %s", res.FontPath, tt.want)
			}
			if !slices.Equal(res.Missing, tt.missing) || res.MissingCount != len(tt.missing) {
				t.Errorf("missing glyphs %q (%d), want %q", res.Missing, res.MissingCount, tt.missing)
			}
			if !bytes.Contains(doc, []byte(tt.font)) || !bytes.Contains(doc, []byte("/FontFile2")) {
				t.Errorf("document lacks %q or an embedded TrueType font", tt.font)
			}
			if again := render(t, Renderer{}, tt.inv); !bytes.Equal(again, doc) {
				t.Error("second render differs")
			}

			text := pdfText(t, doc, 0)
			want := append(tt.texts, "INV-2026-0042", "Bill to", "2026-03-01", "1,200.00", "34.50", "-10.00", "Page 1 of 1")
			for _, s := range want {
				if !strings.Contains(text, s) {
					t.Errorf("PDF text lacks %q:\n%s", s, text)
				}
			}
			if strings.ContainsAny(text, "?\uFFFD") {
				t.Errorf("PDF text has a ? or U+FFFD that the invoice does not:\n%s", text)
			}
			total := regexp.MustCompile(`(?m)^\s*Total\s+EUR 1,224\.50\s*$`)
			if !total.MatchString(text) {
				t.Errorf("PDF text has no line Total EUR 1,224.50:\n%s", text)
			}
		})
	}
}

// TestRenderEveryCharacter prints every character the embedded fonts map,
// a document encoding's worth at a time, and every character of both code
// pages on their own paths, and reads them back.
func TestRenderEveryCharacter(t *testing.T) {
	t.Parallel()
	fs, err := faces()
	if err != nil {
		t.Fatal(err)
	}
	var all []rune
	for r := range fs[0].glyphs {
		// Combining marks attach to the character before them, and
		// squash takes no-break spaces for spaces; TestRenderSpaces has
		// those.
		if r >= 0x80 && !unicode.In(r, unicode.Mn, unicode.Zs, unicode.Cf) {
			all = append(all, r)
		}
	}
	slices.Sort(all)

	type chunk struct {
		runes []rune
		want  FontPath
	}
	var chunks []chunk
	for len(all) > 0 {
		n := min(len(all), maxDocumentRunes)
		chunks = append(chunks, chunk{all[:n], FontPathUTF8})
		all = all[n:]
	}
	printable := func(rs []rune) []rune {
		return slices.DeleteFunc(slices.Clone(rs), func(r rune) bool { return unicode.In(r, unicode.Zs, unicode.Cf) })
	}
	chunks = append(chunks, chunk{printable(encCP1252.extra), FontPathCP1252}, chunk{printable(encCP1250.extra), FontPathCP1250})

	for _, c := range chunks {
		t.Run(string(c.want)+"/"+string(c.runes[0]), func(t *testing.T) {
			t.Parallel()
			// Words of eight characters, so that lines wrap at spaces.
			var words []string
			for rs := c.runes; len(rs) > 0; rs = rs[min(len(rs), 8):] {
				words = append(words, string(rs[:min(len(rs), 8)]))
			}
			inv := invoiceWith("Acme", "Zoe", "x")
			inv.Notes = strings.Join(words, " ")
			_, res := renderResult(t, Renderer{}, inv)
			if res.FontPath != c.want && !(c.want == FontPathCP1250 && res.FontPath == FontPathCP1252) {
				t.Fatalf("font path %s, want %s", res.FontPath, c.want)
			}
			if res.MissingCount != 0 {
				t.Errorf("characters the fonts map reported missing: %q (%d)", res.Missing, res.MissingCount)
			}
			text := squash(pdfText(t, render(t, Renderer{}, inv), 0))
			for _, w := range words {
				if !strings.Contains(text, w) {
					t.Errorf("PDF text lacks %q (%+q)", w, w)
				}
			}
		})
	}
}

// TestRenderLeavesOutFormatCharacters: invisible format characters
// (zero-width spaces and joiners, bidirectional marks and overrides, a
// byte-order mark), common in pasted text, are left out rather than drawn
// as boxes; the soft hyphen stays. The text stays on its single-byte path.
func TestRenderLeavesOutFormatCharacters(t *testing.T) {
	t.Parallel()
	inv := invoiceWith("\uFEFFAcme\u200B GmbH", "Zo\u200Dë\u200E Mü\u202Eller\u202C", "Kaffee\u2060bohnen \u2066x\u2069")
	doc, res := renderResult(t, Renderer{}, inv)
	if res.FontPath != FontPathCP1252 || res.MissingCount != 0 {
		t.Errorf("font path %s, %d missing (%q); want cp1252 and none", res.FontPath, res.MissingCount, res.Missing)
	}
	text := pdfText(t, doc, 0)
	for _, want := range []string{"Acme GmbH", "Zoë Müller", "Kaffeebohnen x"} {
		if !strings.Contains(text, want) {
			t.Errorf("PDF text lacks %q:\n%s", want, text)
		}
	}
	if got := cleanText("a\u00ADb\u200Bc\u202Ed", false); got != "a\u00ADbcd" {
		t.Errorf("cleanText kept %+q, want the soft hyphen only", got)
	}
}

// TestRenderReportsMissingGlyphs: the characters the fonts lack are
// reported, the first MaxReportedMissing of them and their count.
func TestRenderReportsMissingGlyphs(t *testing.T) {
	t.Parallel()
	var lacking []rune
	for r := rune(0x4E00); len(lacking) < MaxReportedMissing+5; r++ {
		lacking = append(lacking, r)
	}
	inv := invoiceWith("Acme", "שלום עולם", "x")
	inv.Notes = string(lacking)
	_, res := renderResult(t, Renderer{}, inv)
	hebrew := []rune("ולםעש") // שלום עולם's letters, in code point order
	if res.MissingCount != len(lacking)+len(hebrew) {
		t.Errorf("MissingCount = %d, want %d", res.MissingCount, len(lacking)+len(hebrew))
	}
	want := append(hebrew, lacking[:MaxReportedMissing-len(hebrew)]...)
	if !slices.Equal(res.Missing, want) {
		t.Errorf("Missing = %q, want the first %d in code point order, %q", res.Missing, MaxReportedMissing, want)
	}
}

// TestRenderReportsCharactersOutsideTheBMP: a character outside the Basic
// Multilingual Plane (an emoji, an ideograph of CJK Extension B such as
// the 𠮷 of Japanese family names), which no font path carries, prints
// as U+FFFD, and the result lists it with the characters the fonts lack,
// on every path: the document does not show it, and an operator reading
// missing_glyphs must learn so. It was left out, and an invoice whose
// customer's name held one reported nothing missing.
func TestRenderReportsCharactersOutsideTheBMP(t *testing.T) {
	t.Parallel()
	for _, issuer := range []string{"Acme", "Acme " + manyRunes(maxDocumentRunes+1)} {
		inv := invoiceWith(issuer, "Zoë \U0001F600", "x")
		inv.Notes = "\U00020BB7田 \U0001F600"
		doc, res := renderResult(t, Renderer{}, inv)
		want := []rune{0x7530, 0x1F600, 0x20BB7} // 田, 😀, 𠮷 in code point order
		if !slices.Equal(res.Missing, want) || res.MissingCount != len(want) {
			t.Errorf("%s path: Missing = %U (count %d), want %U", res.FontPath, res.Missing, res.MissingCount, want)
		}
		if text := pdfText(t, doc, 0); !strings.Contains(text, "Zoë \uFFFD") {
			t.Errorf("%s path: the customer's name does not print with U+FFFD for the emoji:\n%s", res.FontPath, text)
		}
	}
}

func TestRenderSpaces(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		extra string // moves the invoice to a path
		want  FontPath
	}{
		{"", FontPathCP1252},
		{"Ł", FontPathCP1250},
		{"Ω", FontPathUTF8},
		{manyRunes(maxDocumentRunes + 1), FontPathUTF8CID},
	} {
		t.Run(string(tt.want), func(t *testing.T) {
			t.Parallel()
			inv := invoiceWith("Acme "+tt.extra, "Zoe", "no\u00a0break soft\u00adhyphen")
			doc, res := renderResult(t, Renderer{}, inv)
			if res.FontPath != tt.want {
				t.Fatalf("font path %s, want %s", res.FontPath, tt.want)
			}
			// pdftotext writes a no-break space as a space, whatever the
			// font says (fpdf's UTF-8 fonts say U+00A0 too). A soft hyphen
			// prints only where a line breaks at it (TestSoftHyphen).
			const want = "no break softhyphen"
			if text := pdfText(t, doc, 0); !strings.Contains(text, want) {
				t.Errorf("PDF text lacks %+q:\n%+q", want, text)
			}
		})
	}
}
