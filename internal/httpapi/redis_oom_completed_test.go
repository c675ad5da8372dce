package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestRefusedAtMaxmemoryKeepsCompletedTask: without fair dispatch, a
// render of an invoice whose last render completed replaces that task
// (its id is the invoice's); at maxmemory (policy noeviction) Redis
// refuses the new task with 503, and "nothing of the refused request is
// kept" must not leave the completed task deleted: its status still
// answers completed, with its result, once memory is back.
func TestRefusedAtMaxmemoryKeepsCompletedTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	b := setupOn(t, srv.Addr(), nil)
	tn := b.active(t, "acme")
	r := b.do(t, request{method: http.MethodPost, path: "/v1/invoices/1/pdf", host: tn.host(), bearer: tn.key})
	wantStatus(t, r, http.StatusAccepted)
	id := r.json(t)["task_id"].(string)
	state := func() response {
		return b.do(t, request{method: http.MethodGet, path: "/v1/tasks/" + id, host: tn.host(), bearer: tn.key})
	}
	runWorker(t, b)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		r := state()
		wantStatus(t, r, http.StatusOK)
		if r.json(t)["state"] == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("render not completed: %s", r.body)
		}
	}

	if err := b.rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.rdb.ConfigSet(ctx, "maxmemory", "0").Err() })
	wantStatus(t, b.do(t, request{method: http.MethodPost, path: "/v1/invoices/1/pdf", host: tn.host(), bearer: tn.key}), http.StatusServiceUnavailable)
	if err := b.rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	r = state()
	if r.status != http.StatusOK || r.json(t)["state"] != "completed" {
		t.Fatalf("GET the completed render after a refused render: %d %s, want 200 completed", r.status, r.body)
	}
}
