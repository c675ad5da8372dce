package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
)

// TestAdminTenantTimeZone: POST /admin/tenants takes the tenant's time
// zone (UTC when absent) and refuses "", "Local" and unknown names (also
// names only the host's zoneinfo has: "localtime", "posix/...") with a
// 400 that names the field, creating nothing; PUT
// /admin/tenants/{id}/time_zone changes it (audited), refuses the same
// names, answers 404 for an unknown tenant and 409 for one being deleted.
func TestAdminTenantTimeZone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	for _, body := range []string{
		`{"slug":"badzone","time_zone":""}`,
		`{"slug":"badzone","time_zone":"Local"}`,
		`{"slug":"badzone","time_zone":"Mars/Olympus_Mons"}`,
		`{"slug":"badzone","time_zone":"europe/berlin"}`,
		// Names only a host's zoneinfo has (time.LoadLocation reads it
		// first): "localtime" is the host's zone, like "Local".
		`{"slug":"badzone","time_zone":"localtime"}`,
		`{"slug":"badzone","time_zone":"posix/Europe/Berlin"}`,
	} {
		r := b.admin(t, http.MethodPost, "/admin/tenants", body)
		wantStatus(t, r, http.StatusBadRequest)
		if msg := r.errorText(t); !strings.Contains(msg, "time_zone") || !strings.Contains(msg, "invalid time zone") {
			t.Errorf("POST %s: error %q, want it to name time_zone", body, msg)
		}
	}
	if _, err := b.pg.TenantBySlug(ctx, "badzone"); err == nil {
		t.Fatal("a tenant with a refused time zone was created")
	}

	r := b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"kiwi","time_zone":"Pacific/Auckland"}`)
	wantStatus(t, r, http.StatusAccepted)
	kiwi := r.json(t)
	if kiwi["time_zone"] != "Pacific/Auckland" {
		t.Fatalf("provision answer %s, want time_zone Pacific/Auckland", r.body)
	}
	id, _ := kiwi["id"].(string)
	if tn, err := b.pg.TenantByID(ctx, id); err != nil || tn.TimeZone != "Pacific/Auckland" {
		t.Fatalf("catalog row %+v, %v", tn, err)
	}
	r = b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"plain"}`)
	wantStatus(t, r, http.StatusAccepted)
	if plain := r.json(t); plain["time_zone"] != "UTC" {
		t.Fatalf("provision answer without a time zone %s, want time_zone UTC", r.body)
	}

	r = b.admin(t, http.MethodPut, "/admin/tenants/"+id+"/time_zone", `{"time_zone":"America/Los_Angeles"}`)
	wantStatus(t, r, http.StatusOK)
	if got := r.json(t); got["time_zone"] != "America/Los_Angeles" || got["id"] != id {
		t.Fatalf("PUT time_zone answer %s", r.body)
	}
	r = b.admin(t, http.MethodGet, "/admin/tenants/"+id, "")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `"time_zone":"America/Los_Angeles"`) {
		t.Fatalf("GET after the change: %s", r.body)
	}
	audit, err := b.pg.AuditEntries(ctx, id)
	if err != nil || len(audit) == 0 || audit[len(audit)-1].Action != string(tenancy.ActionTimeZoneChanged) ||
		!strings.Contains(string(audit[len(audit)-1].Detail), "America/Los_Angeles") {
		t.Fatalf("audit %+v, %v; want the change last", audit, err)
	}
	for _, body := range []string{`{"time_zone":""}`, `{}`, `{"time_zone":"Local"}`, `{"time_zone":"Nowhere/Land"}`, `{"time_zone":"localtime"}`, `{"time_zone":"right/UTC"}`} {
		r := b.admin(t, http.MethodPut, "/admin/tenants/"+id+"/time_zone", body)
		wantStatus(t, r, http.StatusBadRequest)
		if msg := r.errorText(t); !strings.Contains(msg, "time_zone") {
			t.Errorf("PUT %s: error %q", body, msg)
		}
	}
	if tn, err := b.pg.TenantByID(ctx, id); err != nil || tn.TimeZone != "America/Los_Angeles" {
		t.Fatalf("after refused changes: %+v, %v", tn, err)
	}
	wantStatus(t, b.admin(t, http.MethodPut, "/admin/tenants/tn_01J00000000000000000000000/time_zone", `{"time_zone":"UTC"}`), http.StatusNotFound)

	wantStatus(t, b.admin(t, http.MethodDelete, "/admin/tenants/"+id, ""), http.StatusAccepted)
	r = b.admin(t, http.MethodPut, "/admin/tenants/"+id+"/time_zone", `{"time_zone":"UTC"}`)
	wantStatus(t, r, http.StatusConflict)
	if msg := r.errorText(t); !strings.Contains(msg, "being deleted") {
		t.Fatalf("PUT time_zone of a deleting tenant: error %q", msg)
	}
}
