package pdf

import (
	"regexp"
	"strings"
	"testing"
)

// TestSoftHyphen: a soft hyphen (U+00AD, common in pasted German text)
// marks where a word may break. It prints as a hyphen only at the end of
// a line the word breaks at, and nowhere else, down every font path: a
// description with soft hyphens that fits on its line printed
// "Donau-dampf-schiff-fahrts-gesellschaft", and a word of syllables
// longer than a line was cut anywhere, mid-syllable, between hyphens.
func TestSoftHyphen(t *testing.T) {
	t.Parallel()
	// Each line of the long word, as pdftotext reads it: whole syllables,
	// then a soft hyphen (or a hyphen) on all lines but the last.
	syllables := regexp.MustCompile("^(?:Kilo|meter|geld)+[\u00AD-]?$")
	for _, tt := range pathIssuers() {
		t.Run(string(tt.path), func(t *testing.T) {
			t.Parallel()
			inv := sampleInvoice()
			inv.TenantName = tt.issuer
			inv.Number = "INV-2026\u00AD0042"
			inv.Lines = []Line{
				{Description: "Donau\u00ADdampf\u00ADschiff\u00ADfahrts\u00ADgesellschaft", Quantity: dec("1"), UnitPrice: dec("1")},
				{Description: strings.Repeat("Kilo\u00ADmeter\u00ADgeld\u00AD", 10) + "Kilo", Quantity: dec("1"), UnitPrice: dec("2")},
			}
			doc, res := renderResult(t, Renderer{}, inv)
			if res.FontPath != tt.path {
				t.Fatalf("font path %s, want %s", res.FontPath, tt.path)
			}
			text := pdfText(t, doc, 1)
			for _, want := range []string{"Donaudampfschifffahrtsgesellschaft", "INV-20260042"} {
				if !strings.Contains(text, want) {
					t.Errorf("PDF text lacks %q:\n%s", want, text)
				}
			}
			var long []string
			for _, l := range strings.Split(text, "\n") {
				if f := strings.Fields(l); len(f) > 0 && strings.Contains(f[0], "geld") {
					long = append(long, f[0])
				}
			}
			if len(long) < 2 {
				t.Fatalf("the long word is on %d lines, want it wrapped:\n%s", len(long), text)
			}
			for i, l := range long {
				hyphen := strings.HasSuffix(l, "\u00AD") || strings.HasSuffix(l, "-")
				if !syllables.MatchString(l) || hyphen != (i < len(long)-1) {
					t.Errorf("line %d of the long word is %+q, want whole syllables and a hyphen at a break:\n%s", i+1, l, text)
				}
			}
		})
	}
}
