package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestTaskStateAfterRedisLostItsData: Redis restarted without persistence
// (or flushed) loses asynq's registry of queues (asynq:queues) with
// everything else. A render enqueued afterwards is in Redis, yet asynq's
// inspector finds no task in a queue it does not know: the tenant's look-up
// of the task it was just given must still answer it, not 404 or 500, and
// without restarting the enqueue service.
func TestTaskStateAfterRedisLostItsData(t *testing.T) {
	t.Parallel()
	for name, fairCfg := range map[string]*fair.Config{"fair": {MinPending: 1}, "asynq": nil} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := testenv.StartRedis(t, testenv.RedisOptions{})
			b := setupOn(t, srv.Addr(), fairCfg)
			acme := b.active(t, "acme")
			post := func(path string) response {
				return b.do(t, request{method: http.MethodPost, host: acme.host(), path: path, bearer: acme.key})
			}
			r := post("/v1/invoices/1/pdf")
			wantStatus(t, r, http.StatusAccepted)
			srv.Restart(t) // no persistence: every key is gone

			r = post("/v1/invoices/2/pdf")
			wantStatus(t, r, http.StatusAccepted)
			id, _ := r.json(t)["task_id"].(string)
			got := b.do(t, request{method: http.MethodGet, host: acme.host(), path: "/v1/tasks/" + id, bearer: acme.key})
			if got.status != http.StatusOK {
				t.Errorf("GET /v1/tasks/%s of the render just accepted: %d %s, want 200", id, got.status, got.body)
			}
			// A repeat finds the pending render instead of failing.
			again := post("/v1/invoices/2/pdf")
			if again.status != http.StatusAccepted || again.json(t)["task_id"] != id {
				t.Errorf("repeat of the render: %d %s, want 202 with task %s", again.status, again.body, id)
			}
		})
	}
}
