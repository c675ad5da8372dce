package mailer_test

import (
	"context"
	"mime"
	"path"
	"strings"
	"testing"

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
