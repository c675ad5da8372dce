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
	enc, used := chooseEncoding(inv)
	f := Renderer{}.newPDF(inv)
	fonts, err := addFonts(f, enc, used)
	if err != nil {
		t.Fatal(err)
	}
	defer fonts.release()
	d := newDocument(context.Background(), f, inv, enc, fonts)
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
