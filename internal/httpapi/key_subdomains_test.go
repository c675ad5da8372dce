package httpapi_test

import (
	"bytes"
	"net/http"
	"testing"
)

// TestKeyTellsNothingOfOtherSubdomains: a tenant's key used on any
// subdomain but its own tenant's gets one answer, whether another tenant
// has that subdomain (active, suspended, still provisioning or being
// deleted) or none does. Before, an unknown subdomain was 404 and another
// tenant's 403, so any tenant could list the others' subdomains with its
// own key. Its own subdomain still answers by its tenant's status.
func TestKeyTellsNothingOfOtherSubdomains(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	b.active(t, "globex")
	suspended := b.active(t, "initech")
	wantStatus(t, b.admin(t, http.MethodPost, "/admin/tenants/"+suspended.ID+"/suspend", ""), http.StatusOK)
	b.provisioned(t, "hooli")
	deleting := b.active(t, "umbrella")
	wantStatus(t, b.admin(t, http.MethodDelete, "/admin/tenants/"+deleting.ID, ""), http.StatusAccepted)

	call := func(host string) response {
		return b.do(t, request{method: http.MethodPost, host: host, path: "/v1/invoices/1/pdf", bearer: acme.key})
	}
	want := call("nobody" + suffix)
	if want.status != http.StatusForbidden {
		t.Errorf("acme's key on an unknown subdomain: status %d, want 403; body %s", want.status, want.body)
	}
	for _, slug := range []string{"globex", "initech", "hooli", "umbrella"} {
		r := call(slug + suffix)
		if r.status != want.status || !bytes.Equal(r.body, want.body) {
			t.Errorf("acme's key on %s's subdomain: %d %s; on an unknown one: %d %s: the answers tell that %s exists",
				slug, r.status, r.body, want.status, want.body, slug)
		}
	}
	wantStatus(t, call(acme.host()), http.StatusAccepted)
}
