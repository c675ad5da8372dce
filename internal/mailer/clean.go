package mailer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLineRunes bounds what OneLine returns, in runes (an ellipsis included).
const MaxLineRunes = 200

// MaxFileNameBytes bounds an attachment's name in UTF-8 bytes, its
// extension included: file systems take 255, and a client saving a second
// copy adds " (1)" or the like. The enqueue service bounds the download's
// name the same way.
const MaxFileNameBytes = 200

// Characters OneLine and Text treat specially.
const (
	zwnj = '\u200c' // zero-width non-joiner: needed by Persian, Indic scripts
	zwj  = '\u200d' // zero-width joiner: needed by Indic scripts and emoji
)

// dropped reports whether r is removed from text interpolated into a
// message: control characters (Cc) and format characters (Cf), which
// include every bidirectional control (U+061C, U+200E, U+200F,
// U+202A-U+202E, U+2066-U+2069), zero-width spaces, the BOM and Unicode
// tags. ZWNJ and ZWJ stay: scripts need them, and they reorder nothing.
func dropped(r rune) bool {
	if r == zwnj || r == zwj {
		return false
	}
	return unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r)
}

// OneLine returns s fit to stand inside one line of an email: a header
// value (Subject, a display name, an attachment name) or a value put into
// a line of the body (a customer's name, an invoice number). Every run of
// white space, line and paragraph separators included, becomes one space;
// control and format characters (bidirectional controls among them) are
// removed; invalid UTF-8 becomes U+FFFD; the result is trimmed and at most
// MaxLineRunes runes long (cut with "…").
//
// Values that tenants control must pass through it: a newline in a
// customer's name would otherwise start a paragraph of its own (with
// links) in the body, and a right-to-left override would reorder the
// Subject a customer reads.
func OneLine(s string) string {
	out := make([]rune, 0, min(len(s), MaxLineRunes+1))
	space := false // a space is pending: written before the next rune kept
	for _, r := range strings.ToValidUTF8(s, string(utf8.RuneError)) {
		switch {
		case unicode.IsSpace(r):
			space = len(out) > 0
		case dropped(r):
		default:
			if space {
				out = append(out, ' ')
				space = false
			}
			out = append(out, r)
		}
		if len(out) > MaxLineRunes {
			out = append([]rune(strings.TrimRightFunc(string(out[:MaxLineRunes-1]), unicode.IsSpace)), '…')
			break
		}
	}
	return string(out)
}

// Text returns a message body fit to send: line endings become "\n" (the
// mailer writes CRLF), other control and format characters except tabs
// are removed (bidirectional controls among them), and invalid UTF-8
// becomes U+FFFD. It keeps the body's lines as they are: values
// interpolated into a body must be folded with OneLine first.
func Text(s string) string {
	s = strings.ToValidUTF8(s, string(utf8.RuneError))
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r == '\r', r == '\u2028', r == '\u2029', r == '\u0085':
			return '\n'
		case dropped(r):
			return -1
		}
		return r
	}, s)
}
