package enqueueapp_test

import (
	"context"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/tenancy"
)

// TestTenantAddWhileTheSlugIsBeingDeleted: enqueue tenant add for the slug
// of a tenant being deleted fails (exit 1) saying so, and to add it again
// once the deletion completed.
func TestTenantAddWhileTheSlugIsBeingDeleted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tn := f.provision(t, "acme")
	if _, err := f.deps.Tenancy.RequestDeletion(context.Background(), tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := f.run(t, false, "tenant", "add", "acme")
	if code != enqueueapp.ExitFailure || stdout != "" {
		t.Fatalf("tenant add: exit %d stdout %q stderr %q; want exit %d and nothing on stdout", code, stdout, stderr, enqueueapp.ExitFailure)
	}
	if !strings.Contains(stderr, "tenant acme ("+tn.ID+") is being deleted") || !strings.Contains(stderr, "once its deletion") {
		t.Fatalf("tenant add: stderr %q, want it to say the tenant is being deleted and to retry after the deletion", stderr)
	}
}
