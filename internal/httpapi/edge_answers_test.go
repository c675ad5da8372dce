package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/httpapi"
)

// TestDashboardAPIAnswersAreNotStored: the README promises that every
// JSON answer carries Cache-Control: no-store and X-Content-Type-Options:
// nosniff; the dashboard's JSON API (tenants' task payloads and results)
// carries neither.
func TestDashboardAPIAnswersAreNotStored(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.active(t, "acme") // a tenant:migrate task in the critical queue
	for _, p := range []string{"/admin/dashboard/api/queues", "/admin/dashboard/api/queues/critical/pending_tasks"} {
		r := b.do(t, request{method: http.MethodGet, path: p, bearer: adminToken})
		wantStatus(t, r, http.StatusOK)
		if !json.Valid(r.body) {
			t.Fatalf("%s: not JSON: %.200s", p, r.body)
		}
		if got := r.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store (body %.120s)", p, got, r.body)
		}
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q, want nosniff", p, got)
		}
	}
}

// TestAdminMuxAnswersCarryAntiFraming: "Every admin and dashboard
// answer carries X-Frame-Options: DENY and Content-Security-Policy:
// frame-ancestors 'none'"; the answers the mux gives under /admin (405 for
// a wrong method, 404 for an unknown sub-path) carry neither.
func TestAdminMuxAnswersCarryAntiFraming(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, rq := range []request{
		{method: http.MethodPatch, path: "/admin/tenants", bearer: adminToken},
		{method: http.MethodGet, path: "/admin/migrations", bearer: adminToken},
		{method: http.MethodGet, path: "/admin/tenants/tn_x/nope", bearer: adminToken},
	} {
		r := b.do(t, rq)
		if r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("Content-Security-Policy") != "frame-ancestors 'none'" {
			t.Errorf("%s %s: status %d, X-Frame-Options %q, CSP %q; want DENY and frame-ancestors 'none'",
				rq.method, rq.path, r.status, r.header.Get("X-Frame-Options"), r.header.Get("Content-Security-Policy"))
		}
	}
}

// TestAdminDisabledWrongMethodIs404: without ADMIN_TOKEN the admin
// routes are disabled (404, "disabled, not open"); a wrong method still
// answers 405 with the route's Allow list.
func TestAdminDisabledWrongMethodIs404(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *httpapi.Options) { o.AdminToken = "" })
	for _, rq := range []request{
		{method: http.MethodDelete, path: "/admin/migrations"},
		{method: http.MethodPut, path: "/admin/tenants"},
	} {
		r := b.do(t, rq)
		if r.status != http.StatusNotFound {
			t.Errorf("%s %s with admin disabled: %d (Allow %q) %s, want 404", rq.method, rq.path, r.status, r.header.Get("Allow"), r.body)
		}
	}
}

// TestBulkMissingDuplicateIDs: an id named twice in a batch that the
// tenant has no invoice for is one missing invoice, not two, of the
// batch's distinct ids.
func TestBulkMissingDuplicateIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "bulkdup")
	r := b.do(t, request{method: http.MethodPost, path: "/v1/invoices/pdf", host: tn.host(), bearer: tn.key,
		body: strings.NewReader(`{"invoice_ids":[9001,9001,1,9001]}`)})
	wantStatus(t, r, http.StatusNotFound)
	var got struct {
		Error   string  `json:"error"`
		Missing []int64 `json:"missing"`
		Count   int     `json:"missing_count"`
	}
	decode(t, r.body, &got)
	if len(got.Missing) != 1 || got.Missing[0] != 9001 || got.Count != 1 {
		t.Fatalf("missing %v, missing_count %d, error %q; want [9001], 1", got.Missing, got.Count, got.Error)
	}
	if !strings.HasPrefix(got.Error, "1 of 2 invoices not found") {
		t.Errorf("error %q, want it to count the batch's 2 distinct ids", got.Error)
	}
}

// TestNonIntegerNumberMessage: a number that is not an integer (or
// out of range) is refused with "must be a number", which it is.
func TestNonIntegerNumberMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "numbers")
	for _, body := range []string{`{"invoice_ids":[1.5]}`, `{"invoice_ids":[1e30]}`} {
		r := b.do(t, request{method: http.MethodPost, path: "/v1/invoices/pdf", host: tn.host(), bearer: tn.key, body: strings.NewReader(body)})
		wantStatus(t, r, http.StatusBadRequest)
		if msg := r.errorText(t); strings.HasSuffix(msg, "must be a number") || !strings.Contains(msg, "integer") {
			t.Errorf("%s: error %q; want it to say an integer is expected", body, msg)
		}
	}
}
