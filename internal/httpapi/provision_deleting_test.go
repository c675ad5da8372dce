package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
)

// TestProvisionWhileTheSlugIsBeingDeleted: POST /admin/tenants for the
// slug of a tenant whose deletion was requested answers 409 saying the
// tenant is being deleted (not that the slug is taken for good), from the
// request until its tenant:destroy deleted the catalog row, however the
// calls interleave with the destroy; once the row is gone the slug is
// provisioned again.
func TestProvisionWhileTheSlugIsBeingDeleted(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	ctx := context.Background()
	body := `{"slug":"acme"}`
	beingDeleted := func(t *testing.T, r response) {
		t.Helper()
		wantStatus(t, r, http.StatusConflict)
		if msg := r.errorText(t); !strings.Contains(msg, `tenant "acme" is being deleted`) || !strings.Contains(msg, "once its deletion") {
			t.Fatalf("409 error %q, want it to say the tenant is being deleted and to retry after the deletion", msg)
		}
	}
	// A live tenant's slug is taken.
	acme := b.active(t, "acme")
	r := b.admin(t, http.MethodPost, "/admin/tenants", body)
	wantStatus(t, r, http.StatusConflict)
	if msg := r.errorText(t); !strings.Contains(msg, "is taken") {
		t.Fatalf("409 error for a live tenant's slug %q", msg)
	}

	wantStatus(t, b.admin(t, http.MethodDelete, "/admin/tenants/"+acme.ID, ""), http.StatusAccepted)
	beingDeleted(t, b.admin(t, http.MethodPost, "/admin/tenants", body))

	// Against the destroy: each answer says the tenant is being deleted,
	// until one (after the row's delete) provisions the slug again.
	deleting, err := b.pg.TenantByID(ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := b.tenancy.Destroy(ctx, deleting, tenancy.ActorWorker); err != nil {
			t.Error(err)
		}
	})
	for {
		r := b.admin(t, http.MethodPost, "/admin/tenants", body)
		if r.status == http.StatusAccepted {
			if r.json(t)["id"] == acme.ID {
				t.Fatalf("the new tenant took the deleted one's id: %s", r.body)
			}
			break
		}
		beingDeleted(t, r)
	}
	wg.Wait()
}
