package pdf

import (
	"strings"
	"time"
)

// cleanText makes s safe for fpdf's UTF-8 fonts: fpdf indexes glyph widths
// by rune in a table of 65,536 entries, so a rune outside the Basic
// Multilingual Plane (an emoji, say) would crash it; such runes, invalid
// UTF-8 and control characters become U+FFFD. Tabs become spaces and line
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
