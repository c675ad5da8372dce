package mailer_test

import (
	"context"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/invoicing/tenantworker/internal/mailer"
)

// TestAttachmentNameFitsAFileSystem: an attachment name stays within
// mailer.MaxFileNameBytes bytes of UTF-8 (file systems take 255, the
// download's name is bounded the same way, TestDownloadFilenameFitsAFileSystem),
// whatever script the invoice number is in. The bound was 200 characters:
// a number of 3- or 4-byte characters made a name of 600-800 bytes, which
// a mail client cannot save under that name. The name is cut between
// characters (valid UTF-8), keeps its ".pdf" and as much of the number as
// fits; a name within the bound is kept as it is.
func TestAttachmentNameFitsAFileSystem(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		keep bool // the name fits: it reads as itself
	}{
		{"invoice-" + strings.Repeat("請求書", 80) + ".pdf", false},         // 3 bytes a character
		{"invoice-" + strings.Repeat("\U00020000", 150) + ".pdf", false}, // 4 bytes
		{"invoice-" + strings.Repeat("Ωmega-", 40) + ".pdf", false},      // 2 and 1
		{"invoice-" + strings.Repeat("e\u0301", 150) + ".pdf", false},    // letter and combining mark
		{"invoice-" + strings.Repeat("Ä", 94) + ".pdf", true},            // 200 bytes: fits
		{"invoice-" + strings.Repeat("A", 188) + ".pdf", true},           // exactly 200 bytes
	} {
		f, err := mailer.NewFile(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		m := testMessage()
		m.Attachments[0].Name = c.name
		if err := f.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		p := parseMessage(t, readOutbox(t, f))
		if len(p.attachments) != 1 {
			t.Fatalf("%.30s...: attachments %d, want one", c.name, len(p.attachments))
		}
		for got := range p.attachments {
			if len(got) > mailer.MaxFileNameBytes || !utf8.ValidString(got) || path.Ext(got) != ".pdf" {
				t.Errorf("%.30s...: attachment name of %d bytes (valid UTF-8 %v): %.60q...; want at most %d bytes ending in .pdf",
					c.name, len(got), utf8.ValidString(got), got, mailer.MaxFileNameBytes)
			}
			if c.keep && got != c.name {
				t.Errorf("attachment name %q of %d bytes reads as %q: want it kept", c.name, len(c.name), got)
			}
			if !c.keep && len(got) < mailer.MaxFileNameBytes-8 {
				t.Errorf("%.30s...: attachment name %q keeps too little (%d bytes)", c.name, got, len(got))
			}
		}
	}
}
