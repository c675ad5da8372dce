package pdf

import (
	"slices"
	"strings"
	"testing"
)

// TestSoftHyphenBreakNeedsSyllable: a soft hyphen breaks a line only
// after a syllable of its word. One at the start of a text or of a line,
// or right after a space, has no syllable before it: breaking there
// printed a lone hyphen as a line of its own ("-", then the word), or a
// stray one after the last word ("one -") where the line breaks at the
// space anyway.
func TestSoftHyphenBreakNeedsSyllable(t *testing.T) {
	t.Parallel()
	const shy = "\u00AD"
	tests := []struct {
		name, text string
		want       []string // lines, at most 4 characters wide
	}{
		{"start of text", shy + "abcdefghij", []string{"abcd", "efgh", "ij"}},
		{"two at the start", shy + shy + "abcdefghij", []string{"abcd", "efgh", "ij"}},
		{"after a space", "ab " + shy + "cdefghij", []string{"ab", "cdef", "ghij"}},
		{"start of a line", "abc " + shy + "defghijk", []string{"abc", "defg", "hijk"}},
		{"after a newline", "ab\n" + shy + "cdefghij", []string{"ab", "cdef", "ghij"}},
		{"in a word", "ab" + shy + "cdef", []string{"ab" + shy, "cdef"}},
		{"at the end", "abcd" + shy, []string{"abcd"}},
	}
	// Every character 500 thousandths of an em wide; lines of 4.
	var cw [256]int
	for i := range cw {
		cw[i] = 500
	}
	fc := &face{glyphs: map[rune]glyph{}, missingWidth: 500}
	for _, tt := range tests {
		// The single-byte path, with Latin-1's code for the soft hyphen.
		latin1 := strings.ReplaceAll(tt.text, shy, "\xad")
		got := splitLines(latin1, &cw, 2000, 100, 0xad)
		for i := range got {
			got[i] = strings.ReplaceAll(got[i], "\xad", shy)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: splitLines(%+q) = %+q, want %+q", tt.name, tt.text, got, tt.want)
		}
		if got := splitRunes(tt.text, fc, 2000, 100); !slices.Equal(got, tt.want) {
			t.Errorf("%s: splitRunes(%+q) = %+q, want %+q", tt.name, tt.text, got, tt.want)
		}
	}
}
