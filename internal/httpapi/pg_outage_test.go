package httpapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestPostgresDownIs503 stops the PostgreSQL server the catalog and the
// tenant schemas live on: every route that needs it answers 503 with
// Retry-After and a JSON error, never 500; once it runs again the same
// requests succeed without a restart of the service.
func TestPostgresDownIs503(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	b := setupOnDB(t, pg.CreateDatabase(t), testenv.Redis(t), nil)
	acme := b.active(t, "acme")
	type call struct{ method, path, body string }
	tenantCalls := []call{
		{http.MethodPost, "/v1/invoices/1/pdf", ""},
		{http.MethodPost, "/v1/invoices/2/reminders", ""},
		{http.MethodPost, "/v1/invoices/pdf", `{"invoice_ids":[3,4]}`},
		{http.MethodGet, "/v1/invoices/1/pdf", ""},
	}
	adminCalls := []call{
		{http.MethodGet, "/admin/tenants", ""},
		{http.MethodGet, "/admin/tenants/" + acme.ID, ""},
		{http.MethodGet, "/admin/tenants/" + acme.ID + "/keys", ""},
		{http.MethodPost, "/admin/tenants", `{"slug":"newco"}`},
		{http.MethodPut, "/admin/tenants/" + acme.ID + "/limits", `{"weight":2}`},
		{http.MethodPost, "/admin/tenants/" + acme.ID + "/keys", ""},
		{http.MethodPost, "/admin/tenants/" + acme.ID + "/suspend", ""},
		{http.MethodPost, "/admin/tenants/" + acme.ID + "/resume", ""},
		{http.MethodPost, "/admin/migrations", ""},
		{http.MethodDelete, "/admin/tenants/" + acme.ID, ""},
	}
	run := func(c call, admin bool) response {
		rq := request{method: c.method, path: c.path, host: acme.host(), bearer: acme.key}
		if admin {
			rq = request{method: c.method, path: c.path, bearer: adminToken}
		}
		if c.body != "" {
			rq.body = strings.NewReader(c.body)
		}
		return b.doWithin(t, rq)
	}
	// Warm: the tenant and its key are cached.
	wantStatus(t, run(tenantCalls[0], false), http.StatusAccepted)
	pg.Stop(t)
	check := func(c call, admin bool) {
		r := run(c, admin)
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("%s %s with PostgreSQL down: %d %s, want 503", c.method, c.path, r.status, r.body)
			return
		}
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("%s %s: Retry-After %q", c.method, c.path, r.header.Get("Retry-After"))
		}
		_ = r.errorText(t)
	}
	for _, c := range tenantCalls {
		check(c, false)
	}
	for _, c := range adminCalls {
		check(c, true)
	}
	// Back: the same pool serves again, on its first try.
	pg.Start(t)
	for _, c := range tenantCalls {
		if r := run(c, false); r.status >= 500 {
			t.Errorf("%s %s after PostgreSQL came back: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	for _, c := range adminCalls {
		if r := run(c, true); r.status >= 500 {
			t.Errorf("%s %s after PostgreSQL came back: %d %s", c.method, c.path, r.status, r.body)
		}
	}
}
