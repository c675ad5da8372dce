package httpapi_test

import (
	"fmt"
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

// TestQueryStringOfAWriteIs400: the routes that change something take
// no query parameter, and ignored one without a word, so
// "POST .../queue/drain?type=invoice:pdf" discarded the tenant's whole
// backlog, as if no filter had been asked for, and
// "DELETE /admin/tenants/{id}?dry_run=1" deleted the tenant. Like an
// unknown parameter of GET /admin/tenants, it is 400 naming the
// parameter, and nothing is changed.
func TestQueryStringOfAWriteIs400(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	acme := b.active(t, "acme")
	tenantPost := func(path string) response {
		return b.do(t, request{method: http.MethodPost, path: path, host: acme.host(), bearer: acme.key})
	}
	wantStatus(t, tenantPost("/v1/invoices/1/pdf"), http.StatusAccepted)
	pending := func() float64 {
		q := b.admin(t, http.MethodGet, "/admin/tenants/"+acme.ID+"/queue", "").json(t)
		return q["waiting"].(float64) + q["admitted"].(float64)
	}
	before := pending()
	listed := b.admin(t, http.MethodGet, "/admin/tenants/"+acme.ID+"/keys", "").json(t)["keys"].([]any)
	keys, kid := len(listed), fmt.Sprint(listed[0].(map[string]any)["id"])

	wantRefused := func(method, path string, r response, param string) {
		t.Helper()
		if r.status != http.StatusBadRequest {
			t.Errorf("%s %s: %d %.160s; want 400", method, path, r.status, r.body)
			return
		}
		if msg := r.errorText(t); !strings.Contains(msg, `"`+param+`"`) {
			t.Errorf("%s %s: error %q, want it to name %q", method, path, msg, param)
		}
	}
	tn := "/admin/tenants/" + acme.ID
	for _, c := range []struct{ method, path, body, param string }{
		{http.MethodPost, tn + "/queue/drain?type=invoice:pdf", "", "type"},
		{http.MethodDelete, tn + "?dry_run=1", "", "dry_run"},
		{http.MethodPost, tn + "/queue/pause?dry_run", "", "dry_run"},
		{http.MethodPost, tn + "/queue/resume?queue=default", "", "queue"},
		{http.MethodPost, tn + "/suspend?dry_run=1", "", "dry_run"},
		{http.MethodPost, tn + "/resume?x=1", "", "x"},
		{http.MethodPost, tn + "/keys?dry_run=1", "", "dry_run"},
		{http.MethodDelete, tn + "/keys/" + kid + "?dry_run=1", "", "dry_run"},
		{http.MethodPut, tn + "/limits?dry_run=1", `{"max_running":1}`, "dry_run"},
		{http.MethodPut, tn + "/time_zone?dry_run=1", `{"time_zone":"Asia/Tokyo"}`, "dry_run"},
		{http.MethodPost, "/admin/tenants?dry_run=1", `{"slug":"globex"}`, "dry_run"},
		{http.MethodPost, "/admin/migrations?tenant=" + acme.ID, "", "tenant"},
	} {
		wantRefused(c.method, c.path, b.admin(t, c.method, c.path, c.body), c.param)
	}
	for _, c := range []struct{ path, body, param string }{
		{"/v1/invoices/2/pdf?force=1", "", "force"},
		{"/v1/invoices/2/reminders?dry_run=1", "", "dry_run"},
		{"/v1/invoices/pdf?dry_run=1", `{"invoice_ids":[2]}`, "dry_run"},
	} {
		r := b.do(t, request{method: http.MethodPost, path: c.path, host: acme.host(), bearer: acme.key, body: strings.NewReader(c.body)})
		wantRefused(http.MethodPost, c.path, r, c.param)
	}

	// Nothing was changed: the tenant is active with its limits, time zone
	// and keys, its tasks (its render, its tenant:migrate) still wait,
	// unpaused, and no other tenant was provisioned.
	got := b.admin(t, http.MethodGet, tn, "").json(t)
	if got["status"] != "active" || got["time_zone"] != acme.TimeZoneName() {
		t.Errorf("tenant after the refused writes: %v; want it active in %s", got, acme.TimeZoneName())
	}
	if n := len(b.admin(t, http.MethodGet, tn+"/keys", "").json(t)["keys"].([]any)); n != keys {
		t.Errorf("%d keys after the refused writes, want %d", n, keys)
	}
	q := b.admin(t, http.MethodGet, tn+"/queue", "").json(t)
	if q["waiting"].(float64)+q["admitted"].(float64) != before || q["paused"] != false {
		t.Errorf("queue after the refused writes: %v; want its %v tasks, not paused", q, before)
	}
	pol := q["policy"].(map[string]any)
	if pol["max_running"] == float64(1) {
		t.Errorf("policy after the refused limits: %v", pol)
	}
	list := b.admin(t, http.MethodGet, "/admin/tenants", "").json(t)["tenants"].([]any)
	if len(list) != 1 {
		t.Errorf("%d tenants after the refused provisioning, want 1", len(list))
	}
	// Without a query string the same writes still work.
	wantStatus(t, b.admin(t, http.MethodPost, tn+"/queue/drain", ""), http.StatusOK)
	wantStatus(t, tenantPost("/v1/invoices/2/pdf?"), http.StatusAccepted)
}
