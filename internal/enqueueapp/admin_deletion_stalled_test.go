package enqueueapp_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDeletionWhileRedisAnswersNothingSaysStillPropagating: DELETE
// /admin/tenants/{id} while Redis answers nothing marks the tenant deleting
// in the catalog, but its cache invalidation cannot reach Redis, so other
// replicas may still serve the tenant. The answer must come by
// ADMIN_REQUEST_TIMEOUT and say that the change is saved and still
// propagating without the request (README, "Admin deadline"), 503 with
// Retry-After: it must not claim that the tenant's routes answer 404
// already.
func TestDeletionWhileRedisAnswersNothingSaysStillPropagating(t *testing.T) {
	t.Parallel()
	r, acme, _ := startStalledAdminRig(t)

	start := time.Now()
	res := r.call(t, http.MethodDelete, "/admin/tenants/"+acme.ID, "", identAdmin, "")
	took := time.Since(start)
	var body struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(res.body, &body)
	t.Logf("DELETE while Redis answers nothing: %d after %v: %s", res.status, took.Round(100*time.Millisecond), body.Error)
	if took > stalledAdminBound {
		t.Errorf("DELETE while Redis answers nothing: answered after %v, want by ADMIN_REQUEST_TIMEOUT (%v, %v with slack)",
			took.Round(100*time.Millisecond), stalledAdminTimeout, stalledAdminBound)
	}
	if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" {
		t.Fatalf("DELETE while Redis answers nothing: %d Retry-After %q, want 503 with Retry-After", res.status, res.header.Get("Retry-After"))
	}
	if !strings.Contains(body.Error, "saved, and propagating it to every replica") {
		t.Errorf("DELETE while Redis answers nothing: error %q, want it to say the change is saved and still propagating (other replicas may still serve the tenant)", body.Error)
	}
	if strings.Contains(body.Error, "answer 404") {
		t.Errorf("DELETE while Redis answers nothing: error %q claims the tenant's routes answer 404, but its invalidation was never published", body.Error)
	}
}
