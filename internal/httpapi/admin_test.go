package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// adminRoutes is one call of every admin route.
var adminRoutes = []struct{ method, path string }{
	{http.MethodPost, "/admin/tenants"},
	{http.MethodGet, "/admin/tenants"},
	{http.MethodGet, "/admin/tenants/tn_x"},
	{http.MethodPost, "/admin/tenants/tn_x/suspend"},
	{http.MethodPost, "/admin/tenants/tn_x/resume"},
	{http.MethodPost, "/admin/tenants/tn_x/keys"},
	{http.MethodDelete, "/admin/tenants/tn_x"},
	{http.MethodPut, "/admin/tenants/tn_x/time_zone"},
	{http.MethodPost, "/admin/migrations"},
	{http.MethodGet, "/admin/dashboard/"},
}

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, rt := range adminRoutes {
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + adminToken + "x", "Bearer " + adminToken[:5], "Basic " + adminToken} {
			r := b.do(t, request{method: rt.method, path: rt.path, auth: auth, body: strings.NewReader(`{}`)})
			if r.status != http.StatusUnauthorized {
				t.Errorf("%s %s with %q: status %d, want 401", rt.method, rt.path, auth, r.status)
				continue
			}
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: no WWW-Authenticate", rt.method, rt.path)
			}
			_ = r.errorText(t)
		}
	}
	// The right token on any Host: bare domain, admin subdomain, an IP, a tenant's.
	for _, host := range []string{"example.com", "admin.example.com", "10.0.0.1:8080", "acme.example.com"} {
		r := b.do(t, request{method: http.MethodGet, host: host, path: "/admin/tenants", bearer: adminToken})
		wantStatus(t, r, http.StatusOK)
	}
}

func TestAdminDisabledWithoutToken(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *httpapi.Options) { o.AdminToken = "" })
	for _, rt := range adminRoutes {
		for _, auth := range []string{"", "Bearer ", "Bearer anything", "Basic " + base64.StdEncoding.EncodeToString([]byte("a:"))} {
			r := b.do(t, request{method: rt.method, path: rt.path, auth: auth})
			if r.status != http.StatusNotFound {
				t.Errorf("%s %s with %q: status %d, want 404 (disabled)", rt.method, rt.path, auth, r.status)
				continue
			}
			_ = r.errorText(t)
		}
	}
}

func TestProvisionFlow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	r := b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"acme","name":"Acme Corp","plan":"pro"}`)
	wantStatus(t, r, http.StatusAccepted)
	got := r.json(t)
	id, _ := got["id"].(string)
	key, _ := got["api_key"].(string)
	if got["slug"] != "acme" || got["status"] != "provisioning" || storage.CheckAPIKeyFormat(key) != nil || tenantctx.ValidateID(id) != nil {
		t.Fatalf("provision answer %s", r.body)
	}

	// The catalog row, the key, the audit entry and the migration task.
	tn, err := b.pg.TenantByID(ctx, id)
	if err != nil || tn.Slug != "acme" || tn.Name != "Acme Corp" || tn.Plan != "pro" || tn.Status != tenantctx.StatusProvisioning {
		t.Fatalf("catalog row %+v, %v", tn, err)
	}
	if owner, err := b.pg.TenantForAPIKey(ctx, key); err != nil || owner != id {
		t.Fatalf("key owner %q, %v", owner, err)
	}
	audit, err := b.pg.AuditEntries(ctx, id)
	if err != nil || len(audit) != 1 || audit[0].Action != string(tenancy.ActionProvisioned) || audit[0].Actor != "admin" {
		t.Fatalf("audit %+v, %v", audit, err)
	}
	pending, err := b.inspector.ListPendingTasks(tasks.QueueCritical)
	if err != nil || len(pending) != 1 {
		t.Fatalf("critical queue: %d tasks, %v", len(pending), err)
	}
	if ti := pending[0]; ti.Type != tasks.TypeTenantMigrate || payloadTenant(t, ti) != id || ti.ID != got["task_id"] {
		t.Fatalf("migration task %s %s %s", ti.Type, ti.ID, ti.Payload)
	}

	// Its routes wait for the migration.
	r = b.do(t, request{method: http.MethodPost, host: "acme.example.com", path: "/v1/invoices/1/pdf", bearer: key})
	wantStatus(t, r, http.StatusConflict)

	// Taken slug.
	r = b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"acme","name":"Other"}`)
	wantStatus(t, r, http.StatusConflict)
	_ = r.errorText(t)

	// An empty name defaults to the slug, an empty plan to "free".
	r = b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"globex"}`)
	wantStatus(t, r, http.StatusAccepted)
	if tn, err := b.pg.TenantByID(ctx, r.json(t)["id"].(string)); err != nil || tn.Name != "globex" || tn.Plan != "free" {
		t.Fatalf("defaults: %+v, %v", tn, err)
	}
}

func TestProvisionRejects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name, body string
		want       int
		errHas     string
	}{
		{"empty body", "", http.StatusBadRequest, "empty body"},
		{"not json", "slug=acme", http.StatusBadRequest, "invalid request body"},
		{"array", `["acme"]`, http.StatusBadRequest, "invalid request body: the body must be an object"},
		{"null", `null`, http.StatusBadRequest, "invalid request body: the body must be an object"},
		{"null padded", " null\n", http.StatusBadRequest, "invalid request body: the body must be an object"},
		{"unknown field", `{"slug":"acme","schema":"pg_catalog"}`, http.StatusBadRequest, "unknown field"},
		{"field in another case", `{"SLUG":"acme"}`, http.StatusBadRequest, `unknown field "SLUG"`},
		{"trailing data", `{"slug":"acme"} {"slug":"b"}`, http.StatusBadRequest, "trailing"},
		// Parsers disagree on which of two members of one name counts (a
		// proxy or an audit log may read the first, encoding/json takes the
		// last): such a body is refused.
		{"duplicate member", `{"slug":"acme","slug":"evil-corp"}`, http.StatusBadRequest, `duplicate field "slug"`},
		{"duplicate member escaped", `{"slug":"acme","\u0073lug":"evil-corp"}`, http.StatusBadRequest, `duplicate field "slug"`},
		{"duplicate member apart", `{"slug":"acme","name":"A","plan":"free","slug":"acme"}`, http.StatusBadRequest, `duplicate field "slug"`},
		{"wrong type", `{"slug":1}`, http.StatusBadRequest, "invalid request body: slug must be a string"},
		{"cut short", `{"slug":"acme"`, http.StatusBadRequest, "not valid JSON"},
		{"unknown plan", `{"slug":"acme","plan":"enterprize"}`, http.StatusBadRequest, `unknown plan "enterprize"`},
		{"no slug", `{"name":"x"}`, http.StatusBadRequest, "slug is required"},
		{"uppercase", `{"slug":"Acme"}`, http.StatusBadRequest, "invalid tenant slug"},
		{"too short", `{"slug":"ab"}`, http.StatusBadRequest, "invalid tenant slug"},
		{"sql", `{"slug":"a\"; drop schema x; --"}`, http.StatusBadRequest, "invalid tenant slug"},
		{"pg_catalog", `{"slug":"pg_catalog"}`, http.StatusBadRequest, "invalid tenant slug"},
		{"path", `{"slug":"../x"}`, http.StatusBadRequest, "invalid tenant slug"},
		{"10 KB", `{"slug":"` + strings.Repeat("a", 10<<10) + `"}`, http.StatusBadRequest, "invalid tenant slug"},
		{"reserved", `{"slug":"admin"}`, http.StatusBadRequest, "reserved"},
		{"control in name", `{"slug":"acme","name":"a\u0000b"}`, http.StatusBadRequest, "control"},
		// JSON text is UTF-8 (RFC 8259); encoding/json turns invalid bytes
		// into U+FFFD, which would store a name other than the one sent.
		{"invalid UTF-8 in name", "{\"slug\":\"acme\",\"name\":\"M\xfcller\"}", http.StatusBadRequest, "not valid UTF-8"},
		{"long plan", `{"slug":"acme","plan":"` + strings.Repeat("p", 41) + `"}`, http.StatusBadRequest, "plan"},
		{"unknown database", `{"slug":"acme","database":"nowhere"}`, http.StatusBadRequest, `database "nowhere" is not a tenant database this service can reach`},
		{"invalid database", `{"slug":"acme","database":"No Where"}`, http.StatusBadRequest, `database "No Where" is not a tenant database this service can reach`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := b.admin(t, http.MethodPost, "/admin/tenants", tc.body)
			wantStatus(t, r, tc.want)
			got := r.errorText(t)
			if !strings.Contains(got, tc.errHas) {
				t.Fatalf("error %q, want it to mention %q", got, tc.errHas)
			}
			if strings.Contains(got, "Go") || strings.Contains(got, "struct") || strings.Contains(got, "json:") {
				t.Fatalf("error %q names Go's types or package", got)
			}
		})
	}
	if ts, err := b.pg.ListTenants(context.Background(), storage.ListOptions{}); err != nil || len(ts) != 0 {
		t.Fatalf("rejected requests created tenants: %v, %v", ts, err)
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	big := `{"slug":"acme","name":"` + strings.Repeat("n", httpapi.MaxBodyBytes) + `"}`

	// Declared length.
	r := b.admin(t, http.MethodPost, "/admin/tenants", big)
	wantStatus(t, r, http.StatusRequestEntityTooLarge)
	_ = r.errorText(t)

	// Chunked: no length up front, the reader stops at the limit.
	r = b.do(t, request{method: http.MethodPost, path: "/admin/tenants", bearer: adminToken,
		body: io.MultiReader(strings.NewReader(big))})
	wantStatus(t, r, http.StatusRequestEntityTooLarge)
	_ = r.errorText(t)

	// On a tenant route too, before any work.
	acme := b.active(t, "acme")
	r = b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: acme.key,
		body: bytes.NewReader(make([]byte, httpapi.MaxBodyBytes+1))})
	wantStatus(t, r, http.StatusRequestEntityTooLarge)

	// Exactly at the limit is fine as far as the limit goes.
	body := `{"slug":"acme2","name":"` + strings.Repeat("n", 150) + `"}`
	body += strings.Repeat(" ", httpapi.MaxBodyBytes-len(body))
	wantStatus(t, b.admin(t, http.MethodPost, "/admin/tenants", body), http.StatusAccepted)
}

func TestListTenants(t *testing.T) {
	t.Parallel()
	b := setup(t)
	want := map[string]bool{}
	for i := range 5 {
		want[b.provisioned(t, fmt.Sprintf("tenant-%d", i)).ID] = true
	}
	act := b.active(t, "acme")
	want[act.ID] = true

	seen := map[string]bool{}
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		r := b.admin(t, http.MethodGet, "/admin/tenants?limit=2&after="+after, "")
		wantStatus(t, r, http.StatusOK)
		var page struct {
			Tenants   []tenantctx.Tenant `json:"tenants"`
			NextAfter string             `json:"next_after"`
		}
		decode(t, r.body, &page)
		for _, tn := range page.Tenants {
			if seen[tn.ID] {
				t.Fatalf("tenant %s listed twice", tn.ID)
			}
			seen[tn.ID] = true
		}
		if page.NextAfter == "" {
			break
		}
		after = page.NextAfter
	}
	if len(seen) != len(want) {
		t.Fatalf("listed %d tenants, want %d", len(seen), len(want))
	}

	r := b.admin(t, http.MethodGet, "/admin/tenants?status=active", "")
	wantStatus(t, r, http.StatusOK)
	var active struct {
		Tenants []tenantctx.Tenant `json:"tenants"`
	}
	decode(t, r.body, &active)
	if len(active.Tenants) != 1 || active.Tenants[0].ID != act.ID || active.Tenants[0].Status != tenantctx.StatusActive {
		t.Fatalf("active filter: %s", r.body)
	}
	r = b.admin(t, http.MethodGet, "/admin/tenants?status=deleting", "")
	if wantStatus(t, r, http.StatusOK); !strings.Contains(string(r.body), `"tenants":[]`) {
		t.Fatalf("empty page: %s", r.body)
	}
	for _, q := range []string{"status=gone", "limit=0", "limit=-1", "limit=x", "limit=1001", "after=%22%3B", "after=" + strings.Repeat("a", 100)} {
		r := b.admin(t, http.MethodGet, "/admin/tenants?"+q, "")
		wantStatus(t, r, http.StatusBadRequest)
		_ = r.errorText(t)
	}

	r = b.admin(t, http.MethodGet, "/admin/tenants/"+act.ID, "")
	wantStatus(t, r, http.StatusOK)
	if got := r.json(t); got["id"] != act.ID || got["slug"] != "acme" || got["status"] != "active" {
		t.Fatalf("get tenant %s", r.body)
	}
	for _, id := range []string{"tn_nosuch", "NOT_AN_ID", strings.Repeat("a", 65)} {
		wantStatus(t, b.admin(t, http.MethodGet, "/admin/tenants/"+id, ""), http.StatusNotFound)
	}
}

func TestSuspendResume(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	acme := b.active(t, "acme")
	prov := b.provisioned(t, "fresh")
	path := "/admin/tenants/" + acme.ID

	r := b.admin(t, http.MethodPost, path+"/suspend", "")
	wantStatus(t, r, http.StatusOK)
	if r.json(t)["status"] != "suspended" {
		t.Fatalf("suspend answer %s", r.body)
	}
	wantStatus(t, b.admin(t, http.MethodPost, path+"/suspend", ""), http.StatusOK) // idempotent
	r = b.admin(t, http.MethodPost, path+"/resume", "")
	wantStatus(t, r, http.StatusOK)
	if r.json(t)["status"] != "active" {
		t.Fatalf("resume answer %s", r.body)
	}
	wantStatus(t, b.admin(t, http.MethodPost, path+"/resume", ""), http.StatusOK) // idempotent

	// A provisioning tenant can be neither suspended nor resumed (it turns
	// active only when migrated).
	for _, action := range []string{"suspend", "resume"} {
		r := b.admin(t, http.MethodPost, "/admin/tenants/"+prov.ID+"/"+action, "")
		wantStatus(t, r, http.StatusConflict)
		_ = r.errorText(t)
	}
	if tn, _ := b.pg.TenantByID(ctx, prov.ID); tn.Status != tenantctx.StatusProvisioning {
		t.Fatalf("provisioning tenant moved to %s", tn.Status)
	}
	wantStatus(t, b.admin(t, http.MethodPost, "/admin/tenants/tn_nosuch/suspend", ""), http.StatusNotFound)

	audit, err := b.pg.AuditEntries(ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	for _, e := range audit {
		if e.Action == string(tenancy.ActionStatusChanged) {
			changes = append(changes, string(e.Detail))
		}
	}
	if len(changes) != 2 {
		t.Fatalf("status audit entries %v, want suspend and resume (not the no-ops)", changes)
	}
}

func TestCreateKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	r := b.admin(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/keys", "")
	wantStatus(t, r, http.StatusCreated)
	key, _ := r.json(t)["api_key"].(string)
	if key == "" || key == acme.key {
		t.Fatalf("new key answer %s", r.body)
	}
	wantStatus(t, b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: key}), http.StatusAccepted)
	wantStatus(t, b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: acme.key}), http.StatusAccepted)
	wantStatus(t, b.admin(t, http.MethodPost, "/admin/tenants/tn_nosuch/keys", ""), http.StatusNotFound)

	wantStatus(t, b.admin(t, http.MethodDelete, "/admin/tenants/"+acme.ID, ""), http.StatusAccepted)
	wantStatus(t, b.admin(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/keys", ""), http.StatusConflict)
}

func TestDeleteTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	acme := b.active(t, "acme")
	call := func() response {
		return b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: acme.key})
	}
	// Warm every cache layer with the active tenant first.
	wantStatus(t, call(), http.StatusAccepted)

	r := b.admin(t, http.MethodDelete, "/admin/tenants/"+acme.ID, "")
	wantStatus(t, r, http.StatusAccepted)
	got := r.json(t)
	if got["id"] != acme.ID || got["status"] != "deleting" {
		t.Fatalf("delete answer %s", r.body)
	}
	// Its routes are gone at once (write-through, no TTL wait).
	wantStatus(t, call(), http.StatusNotFound)

	ti := b.taskInfo(t, tasks.QueueCritical, got["task_id"].(string))
	if ti.Type != tasks.TypeTenantDestroy || payloadTenant(t, ti) != acme.ID {
		t.Fatalf("destroy task %s %s", ti.Type, ti.Payload)
	}
	if tn, err := b.pg.TenantByID(ctx, acme.ID); err != nil || tn.Status != tenantctx.StatusDeleting {
		t.Fatalf("catalog %+v, %v", tn, err)
	}
	var deleted bool
	audit, _ := b.pg.AuditEntries(ctx, acme.ID)
	for _, e := range audit {
		deleted = deleted || e.Action == string(tenancy.ActionDeletionRequested)
	}
	if !deleted {
		t.Fatalf("no %s audit entry in %+v", tenancy.ActionDeletionRequested, audit)
	}

	// Deleting again is accepted (same destroy task), resuming is not.
	r = b.admin(t, http.MethodDelete, "/admin/tenants/"+acme.ID, "")
	wantStatus(t, r, http.StatusAccepted)
	if r.json(t)["task_id"] != got["task_id"] {
		t.Fatalf("second delete enqueued another task: %s", r.body)
	}
	wantStatus(t, b.admin(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/resume", ""), http.StatusConflict)
	wantStatus(t, b.admin(t, http.MethodDelete, "/admin/tenants/tn_nosuch", ""), http.StatusNotFound)

	// The destroy the task would run: afterwards the audit log holds
	// exactly one "deletion requested" (both DELETEs) and one "deletion
	// completed".
	deleting, err := b.pg.TenantByID(ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.tenancy.Destroy(ctx, deleting, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, b.admin(t, http.MethodDelete, "/admin/tenants/"+acme.ID, ""), http.StatusNotFound)
	audit, _ = b.pg.AuditEntries(ctx, acme.ID)
	count := map[string]int{}
	for _, e := range audit {
		count[e.Action]++
	}
	if count[string(tenancy.ActionDeletionRequested)] != 1 || count[string(tenancy.ActionDeletionCompleted)] != 1 {
		t.Fatalf("audit after DELETE, DELETE and the destroy: %v; want one requested and one completed", count)
	}
}

func TestMigrateAll(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	prov := b.provisioned(t, "fresh")
	act := b.active(t, "acme")
	susp := b.active(t, "sleepy")
	if _, err := b.catalog.SetStatus(ctx, susp.ID, tenantctx.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	gone := b.active(t, "gone")
	if _, err := b.catalog.SetStatus(ctx, gone.ID, tenantctx.StatusDeleting); err != nil {
		t.Fatal(err)
	}
	// Drop the provisioning migrations so the queue shows only this run.
	if _, err := b.inspector.DeleteAllPendingTasks(tasks.QueueCritical); err != nil {
		t.Fatal(err)
	}

	r := b.admin(t, http.MethodPost, "/admin/migrations", "")
	wantStatus(t, r, http.StatusAccepted)
	if got := r.json(t); got["enqueued"] != float64(3) {
		t.Fatalf("migrations answer %s", r.body)
	}
	pending, err := b.inspector.ListPendingTasks(tasks.QueueCritical)
	if err != nil {
		t.Fatal(err)
	}
	migrated := map[string]bool{}
	for _, ti := range pending {
		if ti.Type == tasks.TypeTenantMigrate {
			migrated[payloadTenant(t, ti)] = true
		}
	}
	if len(migrated) != 3 || !migrated[prov.ID] || !migrated[act.ID] || !migrated[susp.ID] || migrated[gone.ID] {
		t.Fatalf("migrated %v", migrated)
	}

	// Paging: more tenants than one page holds still all get one task.
	res, err := b.tenancy.MigrateAll(ctx)
	if err != nil || len(res) != 3 {
		t.Fatalf("MigrateAll again: %d, %v", len(res), err)
	}
	for _, m := range res {
		if !m.Existing {
			t.Fatalf("a pending migration was enqueued twice: %+v", m)
		}
	}
}

// TestDashboard: the zero Options serve the dashboard read-only.
func TestDashboard(t *testing.T) {
	t.Parallel()
	b := setup(t)
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, auth := range []string{"", basic("admin", "wrong"), basic(adminToken, ""), "Bearer wrong"} {
		r := b.do(t, request{method: http.MethodGet, path: "/admin/dashboard/", auth: auth})
		wantStatus(t, r, http.StatusUnauthorized)
		if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Basic realm="asynq"`) {
			t.Fatalf("WWW-Authenticate %q", got)
		}
	}
	for _, auth := range []string{basic("anyone", adminToken), basic("", adminToken), "Bearer " + adminToken} {
		r := b.do(t, request{method: http.MethodGet, path: "/admin/dashboard/", auth: auth})
		wantStatus(t, r, http.StatusOK)
		if !strings.Contains(strings.ToLower(string(r.body)), "<html") {
			t.Fatalf("dashboard page %.200s", r.body)
		}
	}
	r := b.do(t, request{method: http.MethodGet, path: "/admin/dashboard/api/queues", auth: basic("x", adminToken)})
	wantStatus(t, r, http.StatusOK)
	// Read-only: asynqmon refuses changes.
	r = b.do(t, request{method: http.MethodPost, path: "/admin/dashboard/api/queues/default:pause", auth: basic("x", adminToken)})
	wantStatus(t, r, http.StatusMethodNotAllowed)
}

func TestDashboardWritable(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *httpapi.Options) { o.DashboardWritable = true })
	acme := b.active(t, "acme") // puts a task into the critical queue
	_ = acme
	r := b.do(t, request{method: http.MethodPost, path: "/admin/dashboard/api/queues/critical:pause", bearer: adminToken})
	wantStatus(t, r, http.StatusNoContent)
	q, err := b.inspector.GetQueueInfo(tasks.QueueCritical)
	if err != nil || !q.Paused {
		t.Fatalf("queue %+v, %v: not paused", q, err)
	}
}

// TestJSONAnswersAreNotStored: answers that carry an API key (provisioning,
// a new key), a tenant's data (task state) or an error must not be kept by
// a browser or an intermediary cache, nor sniffed as another type: every
// JSON answer says Cache-Control: no-store and X-Content-Type-Options:
// nosniff.
func TestJSONAnswersAreNotStored(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	enq := b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: acme.key})
	wantStatus(t, enq, http.StatusAccepted)
	taskID, _ := enq.json(t)["task_id"].(string)

	answers := map[string]response{
		"provision":       b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"initech"}`),
		"new key":         b.admin(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/keys", ""),
		"list keys":       b.admin(t, http.MethodGet, "/admin/tenants/"+acme.ID+"/keys", ""),
		"enqueue":         enq,
		"task state":      b.do(t, request{method: http.MethodGet, host: acme.host(), path: "/v1/tasks/" + taskID, bearer: acme.key}),
		"tenant 401":      b.do(t, request{method: http.MethodGet, host: acme.host(), path: "/v1/tasks/" + taskID}),
		"admin 401":       b.do(t, request{method: http.MethodGet, path: "/admin/tenants"}),
		"unmatched route": b.do(t, request{method: http.MethodGet, path: "/nowhere"}),
	}
	for name, r := range answers {
		if r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: status %d, Content-Type %q", name, r.status, r.header.Get("Content-Type"))
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: status %d, Cache-Control %q, want no-store", name, r.status, cc)
		}
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: status %d, X-Content-Type-Options %q, want nosniff", name, r.status, got)
		}
	}
}
