package httpapi_test

import (
	"maps"
	"net/http"
	"strings"
	"testing"
)

// TestLimitsRouteShowsThePolicyInEveryQueue: after PUT .../limits, the
// queue view names the new policy in every queue of the tenant, also one
// it has no backlog in yet (its next enqueue there carries that policy);
// out-of-range limits are 400 naming the range, and change nothing.
func TestLimitsRouteShowsThePolicyInEveryQueue(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "view-all")
	wantStatus(t, b.do(t, request{method: http.MethodPost, path: "/v1/invoices/1/pdf", host: tn.host(), bearer: tn.key}), http.StatusAccepted)
	wantStatus(t, b.admin(t, http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", `{"max_running":2,"max_waiting":30}`), http.StatusOK)
	for _, body := range []string{`{"weight":1000001}`, `{"max_waiting":-5}`, `{"max_running":99999999999999999999}`, `{"max_running":1.5}`} {
		r := b.admin(t, http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", body)
		wantStatus(t, r, http.StatusBadRequest)
		if msg := r.errorText(t); strings.Contains(msg, "Go ") || strings.Contains(msg, "json:") {
			t.Errorf("%s: error %q", body, msg)
		}
	}
	want := map[string]any{"weight": float64(1), "max_running": float64(2), "max_waiting": float64(30)}
	view := b.admin(t, http.MethodGet, "/admin/tenants/"+tn.ID+"/queue", "").json(t)
	if p := view["policy"].(map[string]any); !maps.Equal(p, want) {
		t.Fatalf("policy %v, want %v", p, want)
	}
	for _, qs := range view["queues"].([]any) {
		if p := qs.(map[string]any)["policy"].(map[string]any); !maps.Equal(p, want) {
			t.Errorf("queue %v shows policy %v, want %v", qs.(map[string]any)["queue"], p, want)
		}
	}
}
