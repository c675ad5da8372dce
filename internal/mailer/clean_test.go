package mailer_test

import (
	"bytes"
	"context"
	"errors"
	"mime"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/invoicing/tenantworker/internal/mailer"
)

// bidiControls are the Unicode bidirectional formatting characters.
const bidiControls = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

func TestOneLine(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", mailer.MaxLineRunes)
	for _, tt := range []struct{ in, want string }{
		{"Zoë Müller", "Zoë Müller"},
		{"  Bob \r\n\r\nPay now: https://evil.example/pay\n\nThanks\t ", "Bob Pay now: https://evil.example/pay Thanks"},
		{"INV-\u202e1000\u202c", "INV-1000"},
		{"a\u2028b\u2029c\u0085d\u00a0e\v\ff", "a b c d e f"},
		{"nul\x00bell\x07esc\x1b[31mdel\x7fc1\u0080", "nulbellesc[31mdelc1"},
		{"zero\u200bwidth\ufeffbom\U000e0041tag", "zerowidthbomtag"},
		{"\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"}, // ZWNJ kept
		{"bad \xff utf8", "bad \ufffd utf8"},
		{"\u202e\n\t", ""},
		{long, long},
		{long + "y", strings.Repeat("x", mailer.MaxLineRunes-1) + "…"},
		{strings.Repeat("ab ", 100), strings.Repeat("ab ", 66) + "a…"},
	} {
		got := mailer.OneLine(tt.in)
		if got != tt.want {
			t.Errorf("OneLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if n := utf8.RuneCountInString(got); n > mailer.MaxLineRunes {
			t.Errorf("OneLine(%q) has %d runes, more than %d", tt.in, n, mailer.MaxLineRunes)
		}
	}
}

func FuzzOneLine(f *testing.F) {
	for _, s := range []string{"Bob\n\nhttp://x", "\u202eabc", "a\x00b", "\xff\xfe", strings.Repeat("é ", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := mailer.OneLine(s)
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) > mailer.MaxLineRunes {
			t.Fatalf("OneLine(%q) = %q: invalid or too long", s, got)
		}
		if strings.ContainsAny(got, "\r\n\t"+bidiControls) || strings.ContainsFunc(got, unicode.IsControl) {
			t.Fatalf("OneLine(%q) = %q keeps a line break, control or bidi character", s, got)
		}
		if got != strings.TrimSpace(got) || strings.Contains(got, "  ") {
			t.Fatalf("OneLine(%q) = %q: spaces not folded", s, got)
		}
		if mailer.OneLine(got) != got {
			t.Fatalf("OneLine is not idempotent on %q", s)
		}
	})
}

func TestText(t *testing.T) {
	t.Parallel()
	in := "Dear Bob,\r\n\r\nline\u202e two\tend\x00\x1b\rthree\u2028four\n"
	if got, want := mailer.Text(in), "Dear Bob,\n\nline two\tend\nthree\nfour\n"; got != want {
		t.Errorf("Text(%q) = %q, want %q", in, got, want)
	}
}

// TestMessageHeadersHoldNoControlOrBidi: whatever the caller hands in,
// the headers of a sent message are single lines without control or
// bidirectional characters, and the body has no bidirectional controls.
func TestMessageHeadersHoldNoControlOrBidi(t *testing.T) {
	t.Parallel()
	f, err := mailer.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	m.From = "=?utf-8?q?Billing=E2=80=AE_Dept?= <billing@example.com>"
	m.To = "=?utf-8?q?Zo=C3=AB=0D=0ABcc=3A_x=40evil.example?= <zoe@example.org>"
	m.Subject = "Reminder: invoice INV-\u202e0042\u202c is overdue\r\nBcc: x@evil.example"
	m.Text = "Amount due: \u202eEUR 1,234.50\n"
	m.Attachments[0].Name = "../INV\n\u202e0042.pdf"
	if err := f.Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(f.Dir(), "*.eml"))
	if len(files) != 1 {
		t.Fatalf("outbox holds %v, want one message", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	p := parseMessage(t, raw)
	if got := p.header["Bcc"]; got != nil {
		t.Errorf("a Bcc header was injected: %q", got)
	}
	dec := new(mime.WordDecoder)
	subject, _ := dec.DecodeHeader(p.header.Get("Subject"))
	if want := "Reminder: invoice INV-0042 is overdue Bcc: x@evil.example"; subject != want {
		t.Errorf("Subject = %q, want %q", subject, want)
	}
	to, err := p.header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Name != "Zoë Bcc: x@evil.example" || to[0].Address != "zoe@example.org" {
		t.Errorf("To = %v (%v), want the display name on one line", to, err)
	}
	from, err := p.header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Billing Dept" {
		t.Errorf("From = %v (%v), want display name %q", from, err, "Billing Dept")
	}
	if strings.ContainsAny(p.text, bidiControls) || !strings.Contains(p.text, "Amount due: EUR 1,234.50") {
		t.Errorf("body %q keeps a bidi control", p.text)
	}
	if _, ok := p.attachments[".._INV 0042.pdf"]; !ok || len(p.attachments) != 1 {
		var names []string
		for name := range p.attachments {
			names = append(names, name)
		}
		t.Errorf("attachments %q, want .._INV 0042.pdf", names)
	}
}

func TestBadRecipientIsPermanent(t *testing.T) {
	t.Parallel()
	f, err := mailer.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{
		"", "  ", "not an address", "zoe@", "a@example.org, b@example.org", "zoe@example.org\r\nBcc: x@y",
		// Local parts that need quoting: go-mail would send them unquoted in RCPT TO.
		`"zoe@evil.example> x"@example.org`, `Zoë <"zoe@evil.example> x"@example.org>`,
		`"zoe mueller"@example.org`, `".zoe"@example.org`, `"zoe."@example.org`, `"zoe..m"@example.org`,
		`"zoe\"m"@example.org`, `"zoe,m"@example.org`, `""@example.org`,
	} {
		if err := mailer.CheckRecipient(to); !errors.Is(err, mailer.ErrBadRecipient) {
			t.Errorf("CheckRecipient(%q) = %v, want ErrBadRecipient", to, err)
		}
		m := testMessage()
		m.To = to
		err := f.Send(context.Background(), m)
		if !errors.Is(err, mailer.ErrBadRecipient) {
			t.Errorf("Send to %q = %v, want ErrBadRecipient", to, err)
		}
		if to != "" && err != nil && strings.Contains(err.Error(), to) {
			t.Errorf("Send error %q repeats the address", err)
		}
	}
	for _, to := range []string{
		"zoe@example.org", "Zoë Müller <zoe@example.org>", "o'brien+tag.x@example.org", "{zoe}=#!@example.org",
		`"zoe.mueller"@example.org`, // quoted, but a dot-atom: sent as zoe.mueller@example.org
	} {
		if err := mailer.CheckRecipient(to); err != nil {
			t.Errorf("CheckRecipient(%q) = %v", to, err)
		}
	}
}

// TestHeadersPassNoEncodedWordFromData: text holding an RFC 2047 encoded
// word reaches no header as one a reader would decode. The Subject is sent
// as forced encoded words that decode to the text itself (word by word on
// rune boundaries, within RFC 2047's line lengths); a display name holding
// "=?" is left out, because net/mail writes an ASCII display name as a
// quoted string, which lenient readers decode anyway; go-mail turns the
// '?' of an attachment name into '_'. decodeLenient, which decodes encoded
// words inside quoted strings too, stands for those readers.
func TestHeadersPassNoEncodedWordFromData(t *testing.T) {
	t.Parallel()
	long := "=?utf-8?q?=0D=0ABcc=3A_x?= " + strings.Repeat("é€😀x", 60)
	for _, tt := range []struct {
		name, subject string
	}{
		{"bidi", "Reminder: invoice =?utf-8?q?=E2=80=AE1007-VNI?= is overdue"},
		{"crlf", "=?utf-8?b?DQpCY2M6IHhAZXZpbC5leGFtcGxl?="},
		{"non-ASCII", "Zoë: =?utf-8?q?=E2=80=AE?="},
		{"long", long},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := mailer.NewFile(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			m := testMessage()
			m.Subject = tt.subject
			m.From = `"=?utf-8?q?Billing=E2=80=AE?=" <billing@example.com>`
			// An encoded word that net/mail decodes to one (in an atom).
			m.To = "=?utf-8?q?=3D=3Futf-8=3Fq=3F=3DE2=3D80=3DAE=3F=3D?= <zoe@example.org>"
			m.Attachments[0].Name = "=?utf-8?q?=E2=80=AE?=.pdf"
			if err := f.Send(context.Background(), m); err != nil {
				t.Fatalf("Send: %v", err)
			}
			raw := readOutbox(t, f)
			p := parseMessage(t, raw)

			want := mailer.OneLine(tt.subject)
			subject, err := new(mime.WordDecoder).DecodeHeader(p.header.Get("Subject"))
			if err != nil || subject != want {
				t.Errorf("Subject decodes to %q (%v), want the text itself %q", subject, err, want)
			}
			lines := rawHeader(t, raw, "Subject")
			for i, l := range lines {
				if len(l) > 76 {
					t.Errorf("Subject line %d is %d characters long, more than RFC 2047's 76: %q", i, len(l), l)
				}
				for w := range strings.FieldsSeq(strings.TrimPrefix(l, "Subject:")) {
					if !strings.HasPrefix(w, "=?utf-8?b?") || !strings.HasSuffix(w, "?=") || len(w) > 75 {
						t.Errorf("Subject word %q: want a base64 encoded word of at most 75 characters", w)
					}
					if dec, err := new(mime.WordDecoder).Decode(w); err != nil || !utf8.ValidString(dec) {
						t.Errorf("Subject word %q decodes to %q (%v): want whole runes", w, dec, err)
					}
				}
			}

			for _, h := range []string{"From", "To"} {
				addrs, err := p.header.AddressList(h)
				if err != nil || len(addrs) != 1 || addrs[0].Name != "" {
					t.Errorf("%s = %v (%v), want the address without its display name", h, addrs, err)
				}
			}
			if _, ok := p.attachments["=_utf-8_q_=E2=80=AE_=.pdf"]; !ok || len(p.attachments) != 1 {
				t.Errorf("attachments %v, want =_utf-8_q_=E2=80=AE_=.pdf", p.attachments)
			}
			headers, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
			if got := decodeLenient(string(headers)); strings.ContainsAny(got, bidiControls) || strings.Contains(got, "\nBcc") {
				t.Errorf("the headers, decoded as a lenient reader does, hold a bidi control or a line break:\n%s", got)
			}
		})
	}
}

// readOutbox returns the one message in f's outbox.
func readOutbox(t *testing.T, f *mailer.File) []byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(f.Dir(), "*.eml"))
	if len(files) != 1 {
		t.Fatalf("outbox holds %v, want one message", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// rawHeader returns the lines of the header field key in raw as sent, its
// continuation lines included.
func rawHeader(t *testing.T, raw []byte, key string) []string {
	t.Helper()
	headers, _, _ := strings.Cut(string(raw), "\r\n\r\n")
	var lines []string
	in := false
	for l := range strings.SplitSeq(headers, "\r\n") {
		switch {
		case strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t"):
			if in {
				lines = append(lines, l)
			}
		default:
			in = strings.HasPrefix(strings.ToLower(l), strings.ToLower(key)+":")
			if in {
				lines = append(lines, l)
			}
		}
	}
	if len(lines) == 0 {
		t.Fatalf("no %s header in\n%s", key, raw)
	}
	return lines
}

// encodedWord matches an RFC 2047 encoded word.
var encodedWord = regexp.MustCompile(`=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=`)

// decodeLenient decodes every encoded word in s, wherever it stands
// (inside quoted strings too), as lenient mail readers do.
func decodeLenient(s string) string {
	dec := new(mime.WordDecoder)
	return encodedWord.ReplaceAllStringFunc(s, func(w string) string {
		if d, err := dec.Decode(w); err == nil {
			return d
		}
		return w
	})
}
