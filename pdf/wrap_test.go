package pdf

import (
	"context"
	"html"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// word is one word pdftotext found, with its box in points from the
// page's top left corner.
type word struct {
	text                   string
	xMin, yMin, xMax, yMax float64
}

var wordRE = regexp.MustCompile(`<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>`)

// pageWords returns the words of page 1 of doc with their boxes.
func pageWords(t *testing.T, doc []byte) []word {
	t.Helper()
	bin, err := exec.LookPath("pdftotext")
	if err != nil {
		t.Fatalf("pdftotext not found (install poppler-utils: apt-get install poppler-utils): %v", err)
	}
	in := filepath.Join(t.TempDir(), "invoice.pdf")
	if err := os.WriteFile(in, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-bbox", "-f", "1", "-l", "1", in, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext -bbox: %v\n%s", err, out)
	}
	var words []word
	for _, m := range wordRE.FindAllStringSubmatch(string(out), -1) {
		w := word{text: html.UnescapeString(m[5])}
		for i, p := range []*float64{&w.xMin, &w.yMin, &w.xMax, &w.yMax} {
			if *p, err = strconv.ParseFloat(m[i+1], 64); err != nil {
				t.Fatal(err)
			}
		}
		words = append(words, w)
	}
	return words
}

func TestRenderWrapsLongDescription(t *testing.T) {
	t.Parallel()
	for _, tt := range pathIssuers() {
		t.Run(string(tt.path), func(t *testing.T) {
			t.Parallel()
			testWrapsLongDescription(t, tt.issuer, tt.path)
		})
	}
}

// testWrapsLongDescription checks the wrapping of a long description on
// an invoice from issuer, which takes path.
func testWrapsLongDescription(t *testing.T, issuer string, path FontPath) {
	// Distinct words, so each can be found; too long for one line.
	var parts []string
	for i := range 40 {
		parts = append(parts, "w"+strconv.Itoa(100+i))
	}
	long := strings.Join(parts, " ")

	inv := sampleInvoice()
	inv.TenantName = issuer
	inv.Lines = []Line{
		{Description: "Before", Quantity: dec("1"), UnitPrice: dec("1")},
		{Description: long, Quantity: dec("7"), UnitPrice: dec("3.21")},
		{Description: "After", Quantity: dec("1"), UnitPrice: dec("1")},
	}
	doc, res := renderResult(t, Renderer{}, inv)
	if res.FontPath != path {
		t.Fatalf("font path %s, want %s", res.FontPath, path)
	}
	words := pageWords(t, doc)
	find := func(text string) word {
		t.Helper()
		for _, w := range words {
			if w.text == text {
				return w
			}
		}
		t.Fatalf("word %q not on page 1", text)
		return word{}
	}

	// The description column ends where the quantity column starts.
	const ptPerMM = 72 / 25.4
	cols := newTable(&document{inv: inv, contentW: 210 - 2*marginX}).cols
	descRight := (marginX + cols[0].width) * ptPerMM
	qtyHeader := find("Quantity")
	lines := map[float64]bool{}
	var lastY float64
	for _, p := range parts {
		w := find(p)
		if w.xMax > descRight {
			t.Errorf("word %q reaches x=%.1f, past the description column (%.1f)", p, w.xMax, descRight)
		}
		if w.yMin < lastY {
			t.Errorf("word %q is above the word before it", p)
		}
		lastY = w.yMin
		lines[w.yMin] = true
	}
	if len(lines) < 2 {
		t.Fatalf("the long description is on %d line(s), want it wrapped", len(lines))
	}

	// The row stays aligned: quantity, unit price and amount sit on the
	// description's first line, and the next row starts below its last.
	first := find(parts[0])
	for _, s := range []string{"7", "3.21", "22.47"} {
		w := find(s)
		if w.yMin != first.yMin {
			t.Errorf("%q at y=%.1f, want it on the description's first line (y=%.1f)", s, w.yMin, first.yMin)
		}
		if w.xMin < qtyHeader.xMin-20 {
			t.Errorf("%q at x=%.1f is not in the number columns", s, w.xMin)
		}
	}
	if after, lastWord := find("After"), find(parts[len(parts)-1]); after.yMin <= lastWord.yMax {
		t.Errorf("next row at y=%.1f overlaps the wrapped description ending at y=%.1f", after.yMin, lastWord.yMax)
	}
	if before := find("Before"); before.yMax >= first.yMin {
		t.Errorf("row above ends at y=%.1f, below the long row's start y=%.1f", before.yMax, first.yMin)
	}
}

func TestSplitLinesMatchesFpdf(t *testing.T) {
	t.Parallel()
	inv := invoiceWith("Acme", "Zoë", "x")
	enc, used, _, _ := chooseEncoding(context.Background(), inv)
	f := Renderer{}.newPDF(inv)
	fonts, err := addFonts(f, enc, used)
	if err != nil {
		t.Fatal(err)
	}
	defer fonts.release()
	d := newDocument(context.Background(), f, inv, enc, fonts, DefaultMaxPages)
	f.AddPage()

	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "Zo\xeb", "M\xfcller", "GmbH", "consulting", "x", "supercalifragilisticexpialidocious", "\n", "  ", "(1)"}
	for i := range 2000 {
		var b strings.Builder
		for range rng.IntN(30) {
			b.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(3) > 0 {
				b.WriteByte(' ')
			}
		}
		s := b.String()
		w := 5 + rng.Float64()*120
		bold := i%2 == 1
		d.setFont(bold, bodySize)
		var want []string
		for _, l := range f.SplitLines([]byte(s), w) {
			want = append(want, string(l))
		}
		if got := d.wrap(s, w, bold, bodySize); s != "" && !slices.Equal(got, want) {
			t.Fatalf("wrap(%q, %.2f, bold %v) = %q, fpdf's SplitLines %q", s, w, bold, got, want)
		}
	}
}

// TestCIDWrapKeepsEveryCharacter checks the wrapping of descriptions on
// the utf8-cid path: CJK text (which the fonts lack) wraps inside the
// description column, and no character is dropped at a break, not even a
// no-break space, which does not break a line.
func TestCIDWrapKeepsEveryCharacter(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice()
	inv.TenantName = "Acme " + manyRunes(maxDocumentRunes+1)
	var mixed []string
	for r := rune(0x4e00); len(mixed) < 40; r++ {
		mixed = append(mixed, "ab"+string(r)+"cd")
	}
	var pure []rune
	for r := rune(0x5000); len(pure) < 120; r++ {
		pure = append(pure, r)
	}
	const nbsp = "no\u00a0break"
	inv.Lines = []Line{
		{Description: strings.Join(mixed, ""), Quantity: dec("1"), UnitPrice: dec("1")},
		{Description: string(pure), Quantity: dec("1"), UnitPrice: dec("1")},
		{Description: strings.Repeat(nbsp+" ", 40), Quantity: dec("1"), UnitPrice: dec("1")},
	}
	doc, res := renderResult(t, Renderer{}, inv)
	if res.FontPath != FontPathUTF8CID {
		t.Fatalf("font path %s, want %s", res.FontPath, FontPathUTF8CID)
	}
	text := pdfText(t, doc, 0)
	for _, r := range strings.Join(mixed, "") + string(pure) {
		if !strings.ContainsRune(text, r) {
			t.Errorf("PDF text lacks %q (%U)", r, r)
		}
	}
	// pdftotext writes the no-break space as a space.
	if n := strings.Count(text, "no break"); n != 40 {
		t.Errorf("PDF text has %q %d times, want 40 (a no-break space broke a line):\n%s", "no break", n, text)
	}

	const ptPerMM = 72 / 25.4
	cols := newTable(&document{inv: inv, contentW: 210 - 2*marginX}).cols
	descRight := (marginX + cols[0].width) * ptPerMM
	lines := 0
	for _, w := range pageWords(t, doc) {
		if strings.ContainsFunc(w.text, func(r rune) bool { return r >= 0x4e00 && r < 0xa000 }) {
			lines++
			if w.xMax > descRight+0.5 {
				t.Errorf("%q reaches x=%.1f, past the description column (%.1f)", w.text, w.xMax, descRight)
			}
		}
	}
	if lines < 4 {
		t.Errorf("the CJK descriptions are on %d lines, want them wrapped", lines)
	}
}

// TestCIDWidthsMatchFpdf checks that the widths wrap measures text with on
// the utf8-cid path are those fpdf places it with: every character of the
// Basic Multilingual Plane, including those the fonts lack.
func TestCIDWidthsMatchFpdf(t *testing.T) {
	t.Parallel()
	fs, err := faces()
	if err != nil {
		t.Fatal(err)
	}
	f := Renderer{}.newPDF(sampleInvoice())
	fonts, err := addFonts(f, encCID, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fonts.release()
	for i, style := range []string{"", "B"} {
		f.SetFont(fontFamily, style, 10)
		for r := rune(0x20); r <= 0xFFFF; r++ {
			if r >= 0xD800 && r <= 0xDFFF {
				continue
			}
			if got, want := fs[i].runeWidth(r), f.GetStringSymbolWidth(string(r)); got != want {
				t.Errorf("style %q: %U is %d wide, fpdf says %d", style, r, got, want)
			}
		}
	}
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
}

// TestCIDWrap checks wrap on the utf8-cid path: lines no wider than the
// column (but for a single character), broken only at ' ' and '\n',
// which alone are dropped, and the same lines as fpdf's SplitText where
// SplitText is right (characters the fonts have, spaces only).
func TestCIDWrap(t *testing.T) {
	t.Parallel()
	inv := invoiceWith("Acme", manyRunes(maxDocumentRunes+1), "x")
	enc, used, _, _ := chooseEncoding(context.Background(), inv)
	if enc.path != FontPathUTF8CID {
		t.Fatalf("font path %s, want %s", enc.path, FontPathUTF8CID)
	}
	f := Renderer{}.newPDF(inv)
	fonts, err := addFonts(f, enc, used)
	if err != nil {
		t.Fatal(err)
	}
	defer fonts.release()
	d := newDocument(context.Background(), f, inv, enc, fonts, DefaultMaxPages)
	f.AddPage()

	rng := rand.New(rand.NewPCG(3, 4))
	simple := []string{"a", "Zoë", "Müller", "Ωmega", "Ромашка", "supercalifragilisticexpialidocious", "(1)", " ", "  "}
	hard := []string{"東京", "山田太郎", "no\u00a0break", "\u00a0", "e\u0301", "\u3000", "\u2003", "abc東", "\n", "\n\n"}
	for i := range 3000 {
		words := simple
		if i%2 == 1 {
			words = append(slices.Clone(simple), hard...)
		}
		var b strings.Builder
		for range rng.IntN(30) {
			b.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(3) > 0 {
				b.WriteByte(' ')
			}
		}
		s := b.String()
		if s == "" {
			continue
		}
		w := 5 + rng.Float64()*120
		bold := i%4 >= 2
		d.setFont(bold, bodySize)
		got := d.wrap(s, w, bold, bodySize)

		if i%2 == 0 {
			if want := f.SplitText(s, w); !slices.Equal(got, want) {
				t.Fatalf("wrap(%q, %.2f, bold %v) = %q, fpdf's SplitText %q", s, w, bold, got, want)
			}
		}
		// fpdf's arithmetic rounds the limit up to a thousandth of an em.
		limit := w - 2*f.GetCellMargin() + bodySize/f.GetConversionRatio()/1000
		rest := strings.TrimRight(s, "\n")
		for k, l := range got {
			if f.GetStringWidth(l) > limit+1e-9 && utf8.RuneCountInString(l) > 1 {
				t.Fatalf("wrap(%q, %.2f): line %q is %.2f wide, more than %.2f", s, w, l, f.GetStringWidth(l), limit)
			}
			if !strings.HasPrefix(rest, l) {
				t.Fatalf("wrap(%q, %.2f) = %q: line %d does not continue the text at %q", s, w, got, k, rest)
			}
			rest = rest[len(l):]
			if strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "\n") {
				rest = rest[1:] // the break (a line broken inside a word is followed by the word)
			}
		}
		if rest != "" {
			t.Fatalf("wrap(%q, %.2f) = %q drops %q", s, w, got, rest)
		}
	}
}
