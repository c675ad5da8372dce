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

// TestDownloadOfARecordedPDFMissingFromTheStoreIsLogged: a document that
// invoice_documents records but the store does not hold (DOCUMENTS_DIR not
// the workers' directory, a volume not mounted, a file removed by hand) is
// answered 404, as before, and logged as a warning naming the tenant, the
// invoice and the key. It was answered "invoice PDF not rendered" with
// nothing logged, so an enqueue service whose DOCUMENTS_DIR was not the
// workers' answered every download so, for ever, and nothing told an
// operator (a render asked for again finds the workers' file unchanged).
func TestDownloadOfARecordedPDFMissingFromTheStoreIsLogged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	id, _ := b.storeDocument(t, acme, "INV-GONE", []byte("%PDF-1.7\nfake\n%%EOF\n"))
	key := invoice.DocumentKey(id)
	if err := os.Remove(filepath.Join(b.docs.Root(), acme.ID, filepath.FromSlash(key))); err != nil {
		t.Fatal(err)
	}
	b.logs.Reset()
	r := b.do(t, request{method: http.MethodGet, host: acme.host(), path: fmt.Sprintf("/v1/invoices/%d/pdf", id), bearer: acme.key})
	wantStatus(t, r, http.StatusNotFound)

	wantDocumentWarning(t, b.logs.String(), "missing from the document store", acme.ID, id, key)
}

// wantDocumentWarning fails t unless logs (JSON lines) hold a line whose
// message contains msg, and every such line is a warning naming the
// tenant, the invoice and the document's storage key.
func wantDocumentWarning(t *testing.T, logs, msg, tenantID string, invoiceID int64, key string) {
	t.Helper()
	var found bool
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
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
		if !strings.Contains(line.Msg, msg) {
			continue
		}
		found = true
		if line.Level != "WARN" || line.TenantID != tenantID || int64(line.InvoiceID) != invoiceID || line.StorageKey != key {
			t.Errorf("log line %s; want a warning with tenant_id %s, invoice_id %d, storage_key %s", l, tenantID, invoiceID, key)
		}
	}
	if !found {
		t.Errorf("no warning with %q in its message:\n%s", msg, logs)
	}
}
