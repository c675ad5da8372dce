package pdf

import (
	"strings"
	"time"
)

// cleanText makes s safe for fpdf's UTF-8 fonts: fpdf indexes glyph widths
// by rune in a table of 65,536 entries, so a rune outside the Basic
// Multilingual Plane (an emoji, say) would crash it; such runes, invalid
// UTF-8 and control characters become U+FFFD. Invisible format characters
// (zero-width spaces and joiners, bidirectional marks, embeddings and
// overrides, byte-order marks: Unicode's Cf, but the soft hyphen) are left
// out: the fonts have no glyph for them, and a box in their place would
// print what was meant to be invisible. Tabs become spaces and line
// breaks (\r\n, \r, \n) become \n when multiline is true, spaces otherwise.
func cleanText(s string, multiline bool) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune { return cleanRune(r, multiline) }, s)
}

// formatDate prints t's calendar date in its own location, or "-" when t
// is zero.
func formatDate(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.DateOnly)
}
