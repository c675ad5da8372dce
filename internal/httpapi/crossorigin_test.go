package httpapi_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/tasks"
)

// TestDashboardRefusesCrossOriginWrites: a form another site makes an
// operator's browser post to the writable dashboard, with the browser's
// cached Basic credentials, is refused (403) whichever header gives it
// away (Sec-Fetch-Site, Origin, Referer), and changes nothing; the same
// request from the dashboard's own origin, or from a client that is no
// browser, works. Admin answers carry anti-framing headers (P19 in
// docs/architecture.md).
func TestDashboardRefusesCrossOriginWrites(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *httpapi.Options) { o.DashboardWritable = true })
	b.active(t, "acme") // a task in the critical queue
	host := strings.TrimPrefix(b.srv.URL, "http://")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+adminToken))
	pause := "/admin/dashboard/api/queues/" + tasks.QueueCritical + ":pause"
	paused := func() bool {
		q, err := b.inspector.GetQueueInfo(tasks.QueueCritical)
		if err != nil {
			t.Fatal(err)
		}
		return q.Paused
	}

	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"Sec-Fetch-Site cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"Sec-Fetch-Site same-site", http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"http://acme" + suffix}}},
		{"foreign Origin", http.Header{"Origin": {"https://evil.example"}}},
		{"null Origin", http.Header{"Origin": {"null"}}},
		{"foreign Referer only", http.Header{"Referer": {"https://evil.example/form.html"}}},
		{"foreign Origin, matching Referer", http.Header{"Origin": {"https://evil.example"}, "Referer": {"http://" + host + "/admin/dashboard/"}}},
	} {
		for _, method := range []string{http.MethodPost, http.MethodDelete} {
			r := b.do(t, request{method: method, path: pause, auth: basic, header: tc.header})
			if r.status != http.StatusForbidden {
				t.Errorf("%s %s: status %d, want 403; body %s", tc.name, method, r.status, r.body)
			}
		}
		if paused() {
			t.Fatalf("%s: the cross-origin request paused the queue", tc.name)
		}
	}
	// The admin API refuses them too, token or not.
	r := b.do(t, request{method: http.MethodPost, path: "/admin/tenants", bearer: adminToken,
		header: http.Header{"Origin": {"https://evil.example"}}, body: strings.NewReader(`{"slug":"evil"}`)})
	wantStatus(t, r, http.StatusForbidden)

	// Reads from anywhere are fine (they change nothing).
	wantStatus(t, b.do(t, request{method: http.MethodGet, path: "/admin/dashboard/api/queues", auth: basic,
		header: http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}}), http.StatusOK)

	// Same origin (the dashboard's own page) and non-browser clients work.
	r = b.do(t, request{method: http.MethodPost, path: pause, auth: basic,
		header: http.Header{"Origin": {"http://" + host}, "Sec-Fetch-Site": {"same-origin"}, "Referer": {"http://" + host + "/admin/dashboard/"}}})
	wantStatus(t, r, http.StatusNoContent)
	if !paused() {
		t.Fatal("a same-origin pause did not pause the queue")
	}
	wantStatus(t, b.do(t, request{method: http.MethodPost, path: "/admin/dashboard/api/queues/" + tasks.QueueCritical + ":resume", bearer: adminToken}), http.StatusNoContent)

	// Anti-framing headers on the dashboard and the admin API, also on
	// refusals.
	for _, rq := range []request{
		{method: http.MethodGet, path: "/admin/dashboard/", auth: basic},
		{method: http.MethodGet, path: "/admin/dashboard/"},
		{method: http.MethodGet, path: "/admin/tenants", bearer: adminToken},
	} {
		r := b.do(t, rq)
		if r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("Content-Security-Policy") != "frame-ancestors 'none'" {
			t.Errorf("GET %s (status %d): X-Frame-Options %q, Content-Security-Policy %q", rq.path, r.status,
				r.header.Get("X-Frame-Options"), r.header.Get("Content-Security-Policy"))
		}
	}
}
