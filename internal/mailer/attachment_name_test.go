package mailer_test

import (
	"context"
	"mime"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/invoicing/tenantworker/internal/mailer"
)

// TestLongAttachmentNameKeepsExtension: the reminder names its PDF
// "invoice-<number>.pdf" with the tenant's invoice number (up to
// mailer.MaxLineRunes runes after OneLine); the mailer cuts a name longer
// than MaxLineRunes at the end, so the ".pdf" goes and the customer gets
// a file that mail clients and file managers do not open as a PDF.
func TestLongAttachmentNameKeepsExtension(t *testing.T) {
	t.Parallel()
	f, err := mailer.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	m.Attachments[0].Name = "invoice-" + strings.Repeat("A", 195) + ".pdf"
	if err := f.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	p := parseMessage(t, readOutbox(t, f))
	for name := range p.attachments {
		dec := name
		if d, err := new(mime.WordDecoder).DecodeHeader(name); err == nil {
			dec = d
		}
		if path.Ext(dec) != ".pdf" {
			t.Errorf("attachment name %q lost its .pdf extension", dec)
		}
	}
	if len(p.attachments) != 1 {
		t.Fatalf("attachments %v, want one", p.attachments)
	}
}

// TestNonASCIIAttachmentNameIsRFC2231: an attachment name that is not
// ASCII (an invoice number "Müller-東京", or a long one the mailer cut with
// "…") reaches an RFC-conforming reader (Go's mime/multipart) as itself.
// go-mail wrote RFC 2047 encoded words inside the quoted filename, which
// RFC 2047 (section 5) forbids: such a reader saw "=?UTF-8?q?...?=", not
// ending in ".pdf", and a long name made a header line longer than RFC
// 5322's 998 characters. A reader that knows no RFC 2231 finds an ASCII
// filename="..." beside the RFC 2231 parameters.
func TestNonASCIIAttachmentNameIsRFC2231(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"invoice-Müller-東京.pdf",
		"invoice-" + strings.Repeat("Ä", 150) + ".pdf",
		"invoice-" + strings.Repeat("_", 195) + ".pdf", // cut with "…"
	} {
		f, err := mailer.NewFile(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		m := testMessage()
		m.Attachments[0].Name = name
		if err := f.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		raw := readOutbox(t, f)
		for i, l := range strings.Split(string(raw), "\r\n") {
			if len(l) > 998 {
				t.Errorf("%.30s...: line %d is %d characters long, more than RFC 5322's 998", name, i, len(l))
			}
		}
		p := parseMessage(t, raw)
		if len(p.attachments) != 1 {
			t.Fatalf("attachments %d, want one", len(p.attachments))
		}
		for got := range p.attachments {
			if strings.Contains(got, "=?") || path.Ext(got) != ".pdf" || !utf8.ValidString(got) {
				t.Errorf("attachment name %.30s... reads as %.80q: want the name itself, ending in .pdf", name, got)
			}
			if want := name; utf8.RuneCountInString(name) <= mailer.MaxLineRunes && len(name) <= mailer.MaxFileNameBytes && got != want {
				t.Errorf("attachment name reads as %q, want %q", got, want)
			}
			if ct := p.types[got]; ct != "application/pdf" {
				t.Errorf("attachment content type %q, want application/pdf", ct)
			}
		}
		// A reader without RFC 2231 finds an ASCII filename beside it,
		// ending in .pdf.
		unfolded := strings.ReplaceAll(string(raw), "\r\n ", " ")
		i := strings.Index(unfolded, `filename="`)
		if i < 0 {
			t.Fatalf("%.30s...: no ASCII fallback filename=\"...\"", name)
		}
		fallback, _, _ := strings.Cut(unfolded[i+len(`filename="`):], `"`)
		if strings.ContainsFunc(fallback, func(r rune) bool { return r >= utf8.RuneSelf || r < ' ' }) || path.Ext(fallback) != ".pdf" {
			t.Errorf("%.30s...: fallback filename %q, want ASCII ending in .pdf", name, fallback)
		}
	}
}
