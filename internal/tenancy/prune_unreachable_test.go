package tenancy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestPruneAllDocumentsReportsATenantOnAnUnreachableDatabase: a tenant
// placed on a database this process has no pool for (registered without a
// URL and not in its TENANT_DATABASES, or no registry at all) cannot have
// its documents checked: PruneAllDocuments reports it with
// placement.ErrUnknownDatabase, so `enqueue documents prune` fails and
// the tenant's documents:prune is retried, rather than skipping it silently as
// a tenant erased since the page was read (the error wraps
// storage.ErrNotFound too).
func TestPruneAllDocumentsReportsATenantOnAnUnreachableDatabase(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := b.catalog.AddDatabase(b.ctx, "eu9", ""); err != nil {
		t.Fatal(err)
	}
	tn, err := tenantctx.New("faraway", "Far away", "free")
	if err != nil {
		t.Fatal(err)
	}
	tn.Status, tn.Database = tenantctx.StatusActive, "eu9"
	if _, err := b.catalog.CreateTenant(b.ctx, tn); err != nil {
		t.Fatal(err)
	}
	if _, err := b.docs.Put(b.ctx, tn.ID, invoice.DocumentKey(1), strings.NewReader("%PDF-1.4 invoice")); err != nil {
		t.Fatal(err)
	}

	var seen []error
	err = b.svc.PruneAllDocuments(b.ctx, func(r tenancy.DocumentsPruned, err error) error {
		if r.TenantID == tn.ID {
			seen = append(seen, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || !errors.Is(seen[0], placement.ErrUnknownDatabase) {
		t.Fatalf("PruneAllDocuments reported the tenant on an unreachable database %d times (%v); want once, with ErrUnknownDatabase", len(seen), seen)
	}
	rc, _, err := b.docs.Open(b.ctx, tn.ID, invoice.DocumentKey(1))
	if err != nil {
		t.Fatalf("its document: %v; want it kept", err)
	}
	_ = rc.Close()
}
