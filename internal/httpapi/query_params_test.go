package httpapi_test

import (
	"net/http"
	"testing"
)

// TestMalformedQueryIs400: the README answers "400 for a bad parameter"
// of GET /admin/tenants (and ?top= of GET /admin/queues); a parameter
// that cannot be parsed (a bad %-escape, a ';' separator) or is given
// twice was dropped or half-read by url.Values without a word, so
// "?status=suspended;" listed every tenant, active ones included, as if
// no filter had been asked for.
func TestMalformedQueryIs400(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	b.active(t, "acme")
	for _, q := range []string{
		"/admin/tenants?status=suspended;",
		"/admin/tenants?status=suspended%zz",
		"/admin/tenants?limit=%zz",
		"/admin/tenants?status=suspended&status=active",
		"/admin/tenants?limit=1&limit=1000",
		"/admin/queues?top=5;",
		"/admin/queues?top=5&top=50",
	} {
		r := b.admin(t, http.MethodGet, q, "")
		if r.status != http.StatusBadRequest {
			t.Errorf("GET %s: %d %.120s; want 400", q, r.status, r.body)
			continue
		}
		_ = r.errorText(t)
	}
	// Well-formed queries still work.
	for _, q := range []string{"/admin/tenants?status=active&limit=10", "/admin/tenants", "/admin/queues?top=5", "/admin/tenants?"} {
		wantStatus(t, b.admin(t, http.MethodGet, q, ""), http.StatusOK)
	}
}
