package worker_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/tasks"
)

// TestRendersOfOneInvoiceRunInTurnOnARepeatableReadDatabase: on a
// database whose default_transaction_isolation is repeatable read or
// serializable (an operator's ALTER DATABASE, or a role's setting), a
// second render of an invoice that waited for the first one's render lock
// (the follow-up of an edit made while the first ran) loads the invoice
// and its document row as the first one committed them, and records the
// edited invoice's document: both succeed, the stored row is the file's,
// and a third run finds it unchanged. The render's transaction runs at
// read committed, which its protocol (lock, then load) is made for.
// Before, its snapshot was taken by the pin's statement, before the wait:
// it wrote its file over the first one's and was then refused at its
// record (SQLSTATE 40001, the first one's row being newer than its
// snapshot), a failure counted and retried, the row meanwhile describing
// another file than the one stored.
func TestRendersOfOneInvoiceRunInTurnOnARepeatableReadDatabase(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			e := newHandlerEnvSetting(t, nil, "default_transaction_isolation", level)
			acme := e.provision(t, "turns", "Turns Ltd")
			id := e.addInvoice(t, acme, acmeCustomer, acmeInvoice)
			p := tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}
			first, second := e.twoRendersInTurn(t, acme, id)
			if first != nil {
				t.Errorf("first render: %v", first)
			}
			if second != nil {
				t.Errorf("second render, which waited for the first: %v", second)
			}
			row, ok := e.documentRow(t, acme, id)
			if !ok {
				t.Fatal("no document row")
			}
			data := e.readDocument(t, acme, row.StorageKey)
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != row.SHA256 || int64(len(data)) != row.Bytes {
				t.Errorf("stored file: %d bytes, sha256 %x; its row says %d bytes, %s", len(data), sum, row.Bytes, row.SHA256)
			}
			if text := pdfToText(t, data); !strings.Contains(text, "Edited during the render.") {
				t.Errorf("stored PDF lacks the edit:\n%s", text)
			}
			if r := e.workResult(t, p); !r.Unchanged {
				t.Errorf("third run %+v: want unchanged (the stored document is the edited invoice's)", r)
			}
		})
	}
}
