package enqueueapp_test

import (
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
)

// TestPDFCommandForAProvisioningTenant: "enqueue pdf" for a tenant whose
// tenant:migrate has not run yet warned that "the render waits until it
// is" active, then failed on the invoice check with PostgreSQL's
// `relation "invoices" does not exist (SQLSTATE 42P01)`: the tenant has no
// tables yet. It must say the tenant is still provisioning (as the HTTP
// route's 409 does), exit 1 and enqueue nothing.
func TestPDFCommandForAProvisioningTenant(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.provision(t, "acme") // no worker: it stays provisioning, without tables
	code, stdout, stderr := f.run(t, false, "pdf", "--tenant", "acme", "--invoice", "1")
	if code != enqueueapp.ExitFailure || stdout != "" {
		t.Errorf("pdf for a provisioning tenant: exit %d, stdout %q; want exit 1 and nothing on stdout", code, stdout)
	}
	if !strings.Contains(stderr, "provisioning") || strings.Contains(stderr, "SQLSTATE") || strings.Contains(stderr, "waits until") {
		t.Errorf("pdf for a provisioning tenant: stderr %q, want it to say the tenant is still provisioning (not a SQL error)", stderr)
	}
}
