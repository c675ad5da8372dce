package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/invoicing/tenantworker/internal/httpapi"
)

// TestTenantHeaderOnlyForHostsOfNoTenantForm: with AllowTenantHeader,
// X-Tenant is read only when Host is not of the form {slug}{DomainSuffix}
// (localhost, an IP, another domain, a reserved label). A Host of that
// form decides alone, also when no tenant has its slug: it is answered
// 404 as without the header, never served as the X-Tenant tenant (the
// slug of a Host is not looked up before the key is proven).
func TestTenantHeaderOnlyForHostsOfNoTenantForm(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *httpapi.Options) { o.AllowTenantHeader = true })
	acme := b.active(t, "acme")
	hdr := http.Header{"X-Tenant": {"acme"}}
	for host, want := range map[string]int{
		"localhost:8080":        http.StatusAccepted,
		"127.0.0.1:8080":        http.StatusAccepted,
		"api.example.com":       http.StatusAccepted, // reserved: no tenant's host
		"ghost.example.com":     http.StatusNotFound, // a tenant host, of no tenant
		"ghost.example.com:443": http.StatusNotFound,
	} {
		r := b.do(t, request{method: http.MethodPost, host: host, path: "/v1/invoices/1/pdf", bearer: acme.key, header: hdr})
		if r.status != want {
			t.Errorf("Host %q with X-Tenant acme: status %d, want %d; body %s", host, r.status, want, r.body)
		}
	}
}
