package httpapi_test

import (
	"net/http"
	"strings"
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

// TestUnknownQueryParameterIs400: a parameter the route does not take,
// such as a mistyped or differently cased filter ("?state=suspended",
// "?Status=suspended"), was ignored without a word: the list came back
// unfiltered, every tenant in it, as if the operator had asked for all of
// them (a script that suspends or deletes what it lists would act on
// every tenant). Like a malformed query, it is 400 naming the parameter.
func TestUnknownQueryParameterIs400(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	b.active(t, "acme")
	for _, c := range []struct{ query, param string }{
		{"/admin/tenants?state=suspended", "state"},
		{"/admin/tenants?Status=suspended", "Status"},
		{"/admin/tenants?status=active&limt=10", "limt"},
		{"/admin/tenants?status=suspended&after_id=tn_x", "after_id"},
		{"/admin/queues?k=5", "k"},
	} {
		r := b.admin(t, http.MethodGet, c.query, "")
		if r.status != http.StatusBadRequest {
			t.Errorf("GET %s: %d %.160s; want 400", c.query, r.status, r.body)
			continue
		}
		if msg := r.errorText(t); !strings.Contains(msg, `"`+c.param+`"`) {
			t.Errorf("GET %s: error %q, want it to name %q", c.query, msg, c.param)
		}
	}
}
