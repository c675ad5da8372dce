package enqueueapp_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// stalledAdminTimeout is ADMIN_REQUEST_TIMEOUT of the tests that stop
// Redis under the admin routes.
const stalledAdminTimeout = 2 * time.Second

// stalledAdminBound is how long an admin route may take while Redis
// answers nothing, with ADMIN_REQUEST_TIMEOUT=stalledAdminTimeout: the
// deadline, plus slack for answering on a busy machine. What must still
// end after the deadline (a saved change's cache invalidation, a
// provisioning's deletion of its row) goes on without the request (README
// "Admin deadline"). It is a correctness bound on the answer, not a
// performance figure.
const stalledAdminBound = stalledAdminTimeout + 3*time.Second

// startStalledAdminRig starts the enqueue service (fair dispatch,
// ADMIN_REQUEST_TIMEOUT=2s) on a redis-server of its own, provisions the
// tenant acme, then stops that redis-server (testenv.StopRedis: it keeps
// its connections and answers nothing) until resume, also run at the end
// of the test. The rig's client gives up after stalledAdminBound: past it
// a route did not answer within what the documentation promises.
func startStalledAdminRig(t *testing.T) (r *identRig, acme identTenant, resume func()) {
	t.Helper()
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	r = startIdentRig(t, true, "REDIS_URL", srv.URL(), "ADMIN_REQUEST_TIMEOUT", stalledAdminTimeout.String())
	acme = r.tenant(t, "acme", 1)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	resume = testenv.StopRedis(t, rdb)
	r.client.Timeout = stalledAdminBound
	return r, acme, resume
}

// TestProvisionWhileRedisAnswersNothing: POST /admin/tenants while Redis
// answers nothing (its process stopped) must answer, 503 with
// Retry-After, by ADMIN_REQUEST_TIMEOUT (not only before the HTTP server's
// write timeout closes the connection): otherwise the operator gets no
// answer in time and cannot tell whether the tenant exists. The tenant it
// created is being deleted again without the request, and the answer says
// so. So must the other admin routes that reach Redis answer by the
// deadline, each saying what it kept; and once Redis answers again, what
// they said holds (the slug is free, the suspension holds).
func TestProvisionWhileRedisAnswersNothing(t *testing.T) {
	t.Parallel()
	r, acme, resume := startStalledAdminRig(t)

	// The routes run at once: each is bounded on its own, and none waits
	// for another's stalled Redis call.
	var wg sync.WaitGroup
	for _, c := range []struct {
		method, path, body string
		kept               string // in the error when the route ran out of time
	}{
		// The row it created is deleted without the request.
		{http.MethodPost, "/admin/tenants", `{"slug":"globex"}`, "is being deleted again without this request"},
		{http.MethodGet, "/admin/tenants/" + acme.ID + "/queue", "", "nothing was changed"},
		{http.MethodGet, "/admin/queues", "", "nothing was changed"},
		{http.MethodPost, "/admin/migrations", "", "were enqueued"},
		{http.MethodPost, "/admin/tenants/" + acme.ID + "/queue/drain", "", "drain again"},
		// Saved in PostgreSQL; the cache invalidation cannot reach Redis
		// by the deadline: saved, still completing (the invalidation, and
		// the suspension's hold of the backlog, go on without the request).
		{http.MethodPut, "/admin/tenants/" + acme.ID + "/limits", `{"weight":3}`, "saved, and propagating it"},
		{http.MethodPost, "/admin/tenants/" + acme.ID + "/suspend", "", "saved, and propagating it"},
	} {
		wg.Go(func() {
			start := time.Now()
			req, err := http.NewRequest(c.method, r.base+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Authorization", "Bearer "+identAdmin)
			resp, err := r.client.Do(req)
			if err != nil {
				t.Errorf("%s %s while Redis answers nothing: no answer: %v", c.method, c.path, err)
				return
			}
			var body struct {
				Error string `json:"error"`
			}
			derr := json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			took := time.Since(start)
			t.Logf("%s %s: %d after %v: %s", c.method, c.path, resp.StatusCode, took.Round(100*time.Millisecond), body.Error)
			if took > stalledAdminBound {
				t.Errorf("%s %s while Redis answers nothing: answered after %v, want by ADMIN_REQUEST_TIMEOUT (%v, %v with slack)",
					c.method, c.path, took.Round(100*time.Millisecond), stalledAdminTimeout, stalledAdminBound)
			}
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Errorf("%s %s while Redis answers nothing: %d Retry-After %q, want 503 with Retry-After",
					c.method, c.path, resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			if derr != nil || !strings.Contains(body.Error, c.kept) {
				t.Errorf("%s %s while Redis answers nothing: error %q (%v), want it to say %q", c.method, c.path, body.Error, derr, c.kept)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Nothing of globex is kept: once Redis answers, the deletion of the
	// row the stalled attempt created has ended, and the slug provisions.
	resume()
	r.client.Timeout = time.Minute
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		res := r.call(t, http.MethodPost, "/admin/tenants", "", identAdmin, `{"slug":"globex"}`)
		if res.status == http.StatusAccepted {
			break
		}
		if res.status != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("provision globex after Redis resumed: %d %s, want 202 (the stalled attempt said its tenant was being deleted)", res.status, res.body)
		}
	}
	// The suspension was saved, and its hold of acme's backlog, which went
	// on without the request, is made once Redis answers.
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
