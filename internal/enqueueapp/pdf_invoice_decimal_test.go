package enqueueapp_test

import (
	"encoding/json"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/tasks"
)

// TestPDFCommandInvoiceIDIsDecimal: "enqueue pdf --invoice" reads the id
// as POST /v1/invoices/{id}/pdf does, in decimal digits only. Go's flag
// package reads an integer in Go's syntax, so a zero-padded "010" was
// invoice 8 (octal) and "0x0a" invoice 10: the render of another invoice
// than the one asked for was enqueued.
func TestPDFCommandInvoiceIDIsDecimal(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tn := f.activeWithInvoices(t, "acme", 12)

	// Zero-padded, as the HTTP route reads it: invoice 10.
	code, stdout, stderr := f.run(t, false, "pdf", "--tenant", "acme", "--invoice", "010")
	if code != enqueueapp.ExitOK {
		t.Fatalf("--invoice 010: exit %d stderr %q", code, stderr)
	}
	var got struct {
		TaskID string `json:"task_id"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if want := (tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 10}).Spec().TaskID; got.TaskID != want {
		t.Fatalf("--invoice 010 enqueued %s, want %s (invoice 10)", got.TaskID, want)
	}

	// Not decimal digits: a usage error, as the HTTP route's 400, and
	// nothing enqueued.
	for _, id := range []string{"0x0a", "0o12", "0b1010", "1_0", "+10", "08x"} {
		if code, stdout, stderr := f.run(t, false, "pdf", "--tenant", "acme", "--invoice", id); code != enqueueapp.ExitUsage || stdout != "" {
			t.Errorf("--invoice %s: exit %d stdout %q stderr %q, want exit %d", id, code, stdout, stderr, enqueueapp.ExitUsage)
		}
	}
}
