package enqueueapp_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestSuspendWhileRedisAnswersNothingSaysSavedStillCompleting: POST
// /admin/tenants/{id}/suspend while Redis answers nothing (its process
// stopped) saves the suspension in PostgreSQL; its cache invalidation
// cannot reach Redis. The answer must come by ADMIN_REQUEST_TIMEOUT (not
// once the invalidation gave up on its own 5 s bound), be the "saved,
// still completing" 503 with Retry-After (not "could not be propagated":
// nothing failed yet), and once Redis answers again, what went on without
// the request must have happened: the tenant is refused by the service
// (the invalidation was applied) and its backlog is held.
func TestSuspendWhileRedisAnswersNothingSaysSavedStillCompleting(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	r := startIdentRig(t, true, "REDIS_URL", srv.URL(), "ADMIN_REQUEST_TIMEOUT", stalledAdminTimeout.String())
	acme := r.tenant(t, "acme", 1)
	// Warm the cache: the tenant route finds acme active.
	if res := r.call(t, http.MethodGet, "/v1/invoices/1/pdf", acme.host(), acme.key, ""); res.status == http.StatusForbidden {
		t.Fatalf("acme refused before its suspension: %d %s", res.status, res.body)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	resume := testenv.StopRedis(t, rdb)
	defer resume()
	r.client.Timeout = time.Minute // the bound is checked below, with a message

	start := time.Now()
	res := r.call(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/suspend", "", identAdmin, "")
	took := time.Since(start)
	var body struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(res.body, &body)
	t.Logf("suspend while Redis answers nothing: %d after %v: %s", res.status, took.Round(100*time.Millisecond), body.Error)
	if took > stalledAdminBound {
		t.Errorf("suspend while Redis answers nothing: answered after %v, want by ADMIN_REQUEST_TIMEOUT (%v, %v with slack)",
			took.Round(100*time.Millisecond), stalledAdminTimeout, stalledAdminBound)
	}
	if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" {
		t.Errorf("suspend while Redis answers nothing: %d Retry-After %q, want 503 with Retry-After", res.status, res.header.Get("Retry-After"))
	}
	for _, want := range []string{"did not complete within " + stalledAdminTimeout.String(), "is saved", "goes on without this request"} {
		if !strings.Contains(body.Error, want) {
			t.Errorf("suspend while Redis answers nothing: error %q, want it to say %q (saved, still completing)", body.Error, want)
		}
	}
	if strings.Contains(body.Error, "could not be propagated") {
		t.Errorf("suspend while Redis answers nothing: error %q says the invalidation failed; it was still under way", body.Error)
	}

	// What went on without the request happens once Redis answers: the
	// invalidation reaches the cache (acme refused) and the hold is made.
	resume()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		res := r.call(t, http.MethodGet, "/v1/invoices/1/pdf", acme.host(), acme.key, "")
		if res.status == http.StatusForbidden {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acme still served after its suspension was saved and Redis resumed: %d %s", res.status, res.body)
		}
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		res := r.call(t, http.MethodGet, "/admin/tenants/"+acme.ID+"/queue", "", identAdmin, "")
		var q struct {
			Suspended bool `json:"suspended"`
		}
		if res.status == http.StatusOK && json.Unmarshal(res.body, &q) == nil && q.Suspended {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acme's backlog not held after its suspension was saved: %d %s", res.status, res.body)
		}
	}
}
