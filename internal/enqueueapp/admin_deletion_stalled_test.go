package enqueueapp_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestDeletionWhileRedisAnswersNothingSaysNotPropagated: DELETE
// /admin/tenants/{id} while Redis answers nothing marks the tenant deleting
// in the catalog, but its cache invalidation cannot be published, so other
// replicas may still serve the tenant. As for every saved change whose
// invalidation failed (README, "Admin deadline"), the answer must be the
// "saved but not propagated" 503, which tells the operator to retry: it
// must not claim that the tenant's routes answer 404 already.
func TestDeletionWhileRedisAnswersNothingSaysNotPropagated(t *testing.T) {
	t.Parallel()
	r, acme, _ := startStalledAdminRig(t)

	res := r.call(t, http.MethodDelete, "/admin/tenants/"+acme.ID, "", identAdmin, "")
	var body struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(res.body, &body)
	t.Logf("DELETE while Redis answers nothing: %d %s", res.status, body.Error)
	if res.status != http.StatusServiceUnavailable {
		t.Fatalf("DELETE while Redis answers nothing: %d, want 503", res.status)
	}
	if !strings.Contains(body.Error, "could not be propagated") {
		t.Errorf("DELETE while Redis answers nothing: error %q, want the \"saved but not propagated\" answer (the invalidation failed: other replicas may still serve the tenant)", body.Error)
	}
	if strings.Contains(body.Error, "answer 404") {
		t.Errorf("DELETE while Redis answers nothing: error %q claims the tenant's routes answer 404, but its invalidation was never published", body.Error)
	}
}
