package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestRedisOutOfMemoryIs503 runs Redis past maxmemory (policy noeviction):
// Redis refuses every write with "OOM command not allowed", a refusal for
// now like LOADING or READONLY. The routes that write to Redis must answer
// 503 with Retry-After, not 500.
func TestRedisOutOfMemoryIs503(t *testing.T) {
	t.Parallel()
	t.Run("fair", func(t *testing.T) {
		t.Parallel()
		redisOutOfMemory(t, &fair.Config{MinPending: 1})
	})
	t.Run("asynq", func(t *testing.T) {
		t.Parallel()
		redisOutOfMemory(t, nil)
	})
}

// redisOutOfMemory is TestRedisOutOfMemoryIs503 with fair dispatch
// configured by fairCfg, or without it when nil.
func redisOutOfMemory(t *testing.T, fairCfg *fair.Config) {
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	b := setupOn(t, srv.Addr(), fairCfg)
	acme := b.active(t, "acme")
	post := func(path, body string) response {
		rq := request{method: http.MethodPost, host: acme.host(), path: path, bearer: acme.key}
		if body != "" {
			rq.body = strings.NewReader(body)
		}
		return b.do(t, rq)
	}
	wantStatus(t, post("/v1/invoices/1/pdf", ""), http.StatusAccepted)
	ctx := context.Background()
	if err := b.rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.rdb.ConfigSet(ctx, "maxmemory", "0").Err() })

	check := func(what string, r response) {
		t.Helper()
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("%s with Redis out of memory: %d %s, want 503", what, r.status, r.body)
			return
		}
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("%s: Retry-After %q", what, r.header.Get("Retry-After"))
		}
		if strings.Contains(string(r.body), "OOM") {
			t.Errorf("%s: body shows Redis's error: %s", what, r.body)
		}
	}
	check("POST /v1/invoices/2/pdf", post("/v1/invoices/2/pdf", ""))
	check("POST /v1/invoices/pdf", post("/v1/invoices/pdf", `{"invoice_ids":[3,4]}`))
	check("POST /v1/invoices/2/reminders", post("/v1/invoices/2/reminders", ""))
	check("POST /admin/tenants", b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"globex","name":"Globex"}`))
	// Every write fails: the service is not ready, though Redis answers
	// its PING.
	if r := b.do(t, request{method: http.MethodGet, path: "/readyz"}); r.status != http.StatusServiceUnavailable ||
		!strings.Contains(string(r.body), `"redis":"unavailable"`) || strings.Contains(string(r.body), "OOM") {
		t.Errorf("/readyz with Redis out of memory: %d %s, want 503 naming redis, not its error", r.status, r.body)
	}
	if fairCfg == nil {
		return
	}
	check("POST /admin/migrations", b.admin(t, http.MethodPost, "/admin/migrations", ""))
	check("POST /admin/tenants/{id}/queue/pause", b.admin(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/queue/pause", ""))
	check("POST /admin/tenants/{id}/queue/drain", b.admin(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/queue/drain", ""))

	check("PUT /admin/tenants/{id}/limits", b.admin(t, http.MethodPut, "/admin/tenants/"+acme.ID+"/limits", `{"weight":2}`))

	// Nothing of the refused calls was applied: with memory back, the
	// tenant's counts are those from before, and its next render is new.
	if err := b.rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	q := b.admin(t, http.MethodGet, "/admin/tenants/"+acme.ID+"/queue", "")
	wantStatus(t, q, http.StatusOK)
	m := q.json(t)
	if m["waiting"] != 0.0 || m["admitted"] != 2.0 || m["running"] != 0.0 || m["paused"] != false {
		t.Errorf("after the refused calls the tenant's queue is %s, want 2 admitted (the migration and invoice 1), nothing waiting, not paused", q.body)
	}
	r := post("/v1/invoices/2/pdf", "")
	wantStatus(t, r, http.StatusAccepted)
	if r.json(t)["existing"] != false {
		t.Errorf("render of invoice 2 after the refused one: %s, want a new task", r.body)
	}
}
