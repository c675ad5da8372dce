package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestTaskLookUpWithRedisOutOfMemory: a Redis at maxmemory (noeviction)
// refuses writes only; a task look-up is a read, and must answer the task
// it finds, or 404. The tenant's queues are searched class by class, and
// the look-up registered every queue asynq's registry did not list (here
// "low", where nothing was ever enqueued) with SADD, a write that Redis
// refused: the look-up of a task that is not there answered 503.
func TestTaskLookUpWithRedisOutOfMemory(t *testing.T) {
	t.Parallel()
	for name, fairCfg := range map[string]*fair.Config{"fair": {MinPending: 1}, "asynq": nil} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := testenv.StartRedis(t, testenv.RedisOptions{})
			b := setupOn(t, srv.Addr(), fairCfg)
			acme := b.active(t, "acme")
			r := b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: acme.key})
			wantStatus(t, r, http.StatusAccepted)
			id, _ := r.json(t)["task_id"].(string)

			ctx := context.Background()
			if err := b.rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
				t.Fatal(err)
			}
			if err := b.rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.rdb.ConfigSet(ctx, "maxmemory", "0").Err() })

			got := b.do(t, request{method: http.MethodGet, host: acme.host(), path: "/v1/tasks/" + id, bearer: acme.key})
			if got.status != http.StatusOK {
				t.Errorf("GET /v1/tasks/%s with Redis at maxmemory: %d %s, want 200 (a read)", id, got.status, got.body)
			}
			// A task that is not there: searched in every queue of the
			// tenant, "low" among them, where nothing was enqueued.
			missing := "invoice:pdf:" + acme.ID + ":999"
			got = b.do(t, request{method: http.MethodGet, host: acme.host(), path: "/v1/tasks/" + missing, bearer: acme.key})
			if got.status != http.StatusNotFound {
				t.Errorf("GET /v1/tasks/%s (no such task) with Redis at maxmemory: %d %s, want 404 (a read)", missing, got.status, got.body)
			}
		})
	}
}
