package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestAdminTenantRoutesNameTheTenantInTheAccessLog: an admin request that
// acts on a tenant by its id names it in its access log line (tenant_id),
// whether the tenant exists or not, so that an operator finds a tenant's
// admin history by its id.
func TestAdminTenantRoutesNameTheTenantInTheAccessLog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	for _, c := range []struct {
		method, path, tenantID string
		status                 int
	}{
		{http.MethodGet, "/admin/tenants/" + acme.ID + "/keys", acme.ID, http.StatusOK},
		{http.MethodPost, "/admin/tenants/tn_nosuch/keys", "tn_nosuch", http.StatusNotFound},
		{http.MethodPost, "/admin/tenants/tn_nosuch/suspend", "tn_nosuch", http.StatusNotFound},
	} {
		r := b.admin(t, c.method, c.path, "")
		wantStatus(t, r, c.status)
		id := r.header.Get("X-Request-Id")
		var line map[string]any
		for _, l := range strings.Split(strings.TrimSpace(b.logs.String()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "http request" && m["request_id"] == id {
				line = m
			}
		}
		if line == nil {
			t.Fatalf("%s %s: no access log line for request %q in:\n%s", c.method, c.path, id, b.logs.String())
		}
		if line["tenant_id"] != c.tenantID {
			t.Errorf("%s %s: access log tenant_id %v, want %s", c.method, c.path, line["tenant_id"], c.tenantID)
		}
	}
}
