package pdf

import (
	"strings"
	"testing"
)

// TestDecomposedDiacritics: text in decomposed form (NFD, as macOS
// and some web forms send it: "e" + U+0308 COMBINING DIAERESIS) must print
// "Zoë Müller" like the precomposed text does. The Go fonts have the
// precomposed letters but no combining marks, so the renderer draws every
// mark as an empty box ("Zoe□ Mu□ller"), reports U+0308 as missing, and
// leaves the cp1252 path for it.
func TestDecomposedDiacritics(t *testing.T) {
	inv := sampleInvoice()
	inv.TenantName = "Acme GmbH"
	inv.Customer.Name = "Zoe\u0308 Mu\u0308ller"           // Zoë Müller, NFD
	inv.Lines[0].Description = "Beratung Lo\u0301dz\u0301" // Lódź, NFD
	inv.Lines[1].Description = "Licence"
	doc, res := renderResult(t, Renderer{}, inv)
	if res.MissingCount != 0 {
		t.Errorf("glyphs reported missing: %q (font path %s); the fonts have ë, ü, ó and ź", res.Missing, res.FontPath)
	}
	if res.FontPath != FontPathCP1250 {
		t.Errorf("font path %s, want %s (the precomposed text's)", res.FontPath, FontPathCP1250)
	}
	text := pdfText(t, doc, 0)
	for _, want := range []string{"Zoë Müller", "Beratung Lódź"} {
		if !strings.Contains(text, want) {
			t.Errorf("PDF text lacks %q", want)
		}
	}
}
