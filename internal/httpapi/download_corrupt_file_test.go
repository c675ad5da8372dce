package httpapi_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/invoice"
)

// TestDownloadOfACorruptStoredPDFIsAnsweredAsGone: a stored document that
// is no longer the PDF its render recorded (its size and SHA-256 differ
// from invoice_documents' row) and is no whole PDF either (truncated: no
// %%EOF at its end; overwritten: no %PDF- at its start) is not served: the
// download answers 404 "invoice PDF not rendered", as for a document
// missing from the store (a render asked for again writes it anew: the
// worker renders when the stored file is not the recorded one), for GET,
// HEAD and a matching If-None-Match alike, and a warning names the tenant,
// the invoice and the key. It was served with 200 as application/pdf.
func TestDownloadOfACorruptStoredPDFIsAnsweredAsGone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	whole := []byte("%PDF-1.7\n" + strings.Repeat("stream of a page\n", 200) + "%%EOF\n")
	for _, c := range []struct {
		name    string
		content []byte
	}{
		{"truncated", whole[:len(whole)/2]},
		{"garbage", []byte(strings.Repeat("\x00\xff garbage", 100))},
		{"empty", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, _ := b.storeDocument(t, acme, "INV-"+c.name, whole)
			key := invoice.DocumentKey(id)
			if err := os.WriteFile(filepath.Join(b.docs.Root(), acme.ID, filepath.FromSlash(key)), c.content, 0o600); err != nil {
				t.Fatal(err)
			}
			path := fmt.Sprintf("/v1/invoices/%d/pdf", id)
			b.logs.Reset()
			r := b.do(t, request{method: http.MethodGet, host: acme.host(), path: path, bearer: acme.key})
			wantStatus(t, r, http.StatusNotFound)
			if ct := r.header.Get("Content-Type"); strings.Contains(ct, "pdf") {
				t.Errorf("a corrupt document answered as %s", ct)
			}
			for _, req := range []request{
				{method: http.MethodHead, host: acme.host(), path: path, bearer: acme.key},
				{method: http.MethodGet, host: acme.host(), path: path, bearer: acme.key, header: http.Header{"If-None-Match": {"*"}}},
			} {
				wantStatus(t, b.do(t, req), http.StatusNotFound)
			}

			wantDocumentWarning(t, b.logs.String(), "corrupt", acme.ID, id, key)
		})
	}
}
