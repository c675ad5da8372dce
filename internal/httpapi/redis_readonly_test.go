package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestRedisReadOnlyIs503 turns the Redis the service writes to into a
// replica (REPLICAOF a master that is not there, as a master demoted in
// a failover whose clients still reach it): it answers reads and PING,
// and refuses every write with "READONLY You can't write against a read
// only replica", a refusal for now like LOADING or OOM. An enqueue must
// answer 503 with Retry-After, not 500, with fair dispatch and without:
// asynq's client reports the refusal of its enqueue script as text only,
// and the ping that tells an outage passes.
func TestRedisReadOnlyIs503(t *testing.T) {
	t.Parallel()
	// Port 1 on the loopback: nothing listens, so the replica keeps its
	// data and stays read-only.
	readOnly := redisRefusal{reply: "READONLY ",
		refuse: func(ctx context.Context, rdb *redis.Client) error { return rdb.ReplicaOf(ctx, "127.0.0.1", "1").Err() },
		allow:  func(ctx context.Context, rdb *redis.Client) error { return rdb.ReplicaOf(ctx, "NO", "ONE").Err() }}
	t.Run("fair", func(t *testing.T) {
		t.Parallel()
		redisRefusingWrites(t, &fair.Config{MinPending: 1}, readOnly)
	})
	t.Run("asynq", func(t *testing.T) {
		t.Parallel()
		redisRefusingWrites(t, nil, readOnly)
	})
}

// TestRedisWithoutEnoughReplicasIs503: a master with
// min-replicas-to-write whose replicas are gone or lagging refuses every
// write with "NOREPLICAS Not enough good replicas to write" (and answers
// PING) until they catch up: a refusal for now, as READONLY, so an
// enqueue answers 503 with Retry-After, not 500.
func TestRedisWithoutEnoughReplicasIs503(t *testing.T) {
	t.Parallel()
	noReplicas := redisRefusal{reply: "NOREPLICAS ",
		refuse: func(ctx context.Context, rdb *redis.Client) error {
			return rdb.ConfigSet(ctx, "min-replicas-to-write", "1").Err()
		},
		allow: func(ctx context.Context, rdb *redis.Client) error {
			return rdb.ConfigSet(ctx, "min-replicas-to-write", "0").Err()
		}}
	t.Run("fair", func(t *testing.T) {
		t.Parallel()
		redisRefusingWrites(t, &fair.Config{MinPending: 1}, noReplicas)
	})
	t.Run("asynq", func(t *testing.T) {
		t.Parallel()
		redisRefusingWrites(t, nil, noReplicas)
	})
}

// redisRefusal makes a Redis refuse writes with reply (refuse) and take
// them again (allow). With newConnections, it refuses new connections
// with reply instead, which a go-redis client sees as a connection that
// ended.
type redisRefusal struct {
	reply          string
	refuse, allow  func(context.Context, *redis.Client) error
	newConnections bool
}

// redisRefusingWrites checks the routes that write to Redis while it
// refuses writes as how says, with fair dispatch configured by fairCfg,
// or without it when nil.
func redisRefusingWrites(t *testing.T, fairCfg *fair.Config, how redisRefusal) {
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
	if err := how.refuse(ctx, b.rdb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = how.allow(ctx, b.rdb) })
	if err := b.rdb.Set(ctx, "probe", "1", 0).Err(); err == nil || !how.newConnections && !strings.HasPrefix(err.Error(), how.reply) {
		t.Fatalf("a write to the Redis refusing writes: %v, want %s", err, how.reply)
	}

	check := func(what string, r response) {
		t.Helper()
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("%s with Redis answering %s: %d %s, want 503", what, strings.TrimSpace(how.reply), r.status, r.body)
			return
		}
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("%s: Retry-After %q", what, r.header.Get("Retry-After"))
		}
		if strings.Contains(string(r.body), strings.TrimSpace(how.reply)) {
			t.Errorf("%s: body shows Redis's error: %s", what, r.body)
		}
	}
	check("POST /v1/invoices/2/pdf", post("/v1/invoices/2/pdf", ""))
	check("POST /v1/invoices/pdf", post("/v1/invoices/pdf", `{"invoice_ids":[3,4]}`))
	check("POST /v1/invoices/2/reminders", post("/v1/invoices/2/reminders", ""))
	check("POST /admin/tenants", b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"globex","name":"Globex"}`))
	if fairCfg != nil {
		check("POST /admin/migrations", b.admin(t, http.MethodPost, "/admin/migrations", ""))
		check("POST /admin/tenants/{id}/queue/pause", b.admin(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/queue/pause", ""))
		check("POST /admin/tenants/{id}/queue/drain", b.admin(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/queue/drain", ""))
		check("PUT /admin/tenants/{id}/limits", b.admin(t, http.MethodPut, "/admin/tenants/"+acme.ID+"/limits", `{"weight":2}`))
	}
	// Saved in the catalog, not propagated: the last two.
	check("POST /admin/tenants/{id}/suspend", b.admin(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/suspend", ""))
	check("DELETE /admin/tenants/{id}", b.admin(t, http.MethodDelete, "/admin/tenants/"+acme.ID, ""))
	// Every write fails: the service is not ready, though Redis answers
	// its PING.
	r := b.do(t, request{method: http.MethodGet, path: "/readyz"})
	if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), `"redis":"unavailable"`) {
		t.Errorf("/readyz with Redis answering %s: %d %s, want 503 naming redis", strings.TrimSpace(how.reply), r.status, r.body)
	}
	if strings.Contains(string(r.body), strings.TrimSpace(how.reply)) {
		t.Errorf("/readyz shows Redis's error: %s", r.body)
	}
	if err := how.allow(ctx, b.rdb); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, b.do(t, request{method: http.MethodGet, path: "/readyz"}), http.StatusOK)
}
