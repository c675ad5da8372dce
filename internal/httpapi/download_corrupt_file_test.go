package httpapi_test

import (
	"encoding/json"
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

			var found bool
			for _, l := range strings.Split(strings.TrimSpace(b.logs.String()), "\n") {
				var line struct {
					Level      string  `json:"level"`
					Msg        string  `json:"msg"`
					TenantID   string  `json:"tenant_id"`
					InvoiceID  float64 `json:"invoice_id"`
					StorageKey string  `json:"storage_key"`
				}
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatalf("%v: %s", err, l)
				}
				if !strings.Contains(line.Msg, "corrupt") {
					continue
				}
				found = true
				if line.Level != "WARN" || line.TenantID != acme.ID || int64(line.InvoiceID) != id || line.StorageKey != key {
					t.Errorf("log line %s; want a warning with tenant_id %s, invoice_id %d, storage_key %s", l, acme.ID, id, key)
				}
			}
			if !found {
				t.Errorf("no warning that the stored PDF is corrupt:\n%s", b.logs.String())
			}
		})
	}
}
