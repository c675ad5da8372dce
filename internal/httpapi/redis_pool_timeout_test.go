package httpapi_test

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestRedisPoolTimeoutIs503: while Redis answers nothing (its process
// stopped), the requests that find every connection of the Redis client's
// pool busy with calls that hang get go-redis's ErrPoolTimeout ("redis:
// connection pool timeout") before their deadline. That is Redis being
// unreachable, like the timeout of the calls holding the connections: 503
// with Retry-After, not 500 "internal error". With the defaults (a pool of
// 10 connections per CPU, a pool timeout of 4 s, REQUEST_TIMEOUT 10 s) it
// happens to every request past the pool's size; here the pool has 2.
func TestRedisPoolTimeoutIs503(t *testing.T) {
	t.Parallel()
	for _, withFair := range []bool{false, true} {
		t.Run("fair="+strconv.FormatBool(withFair), func(t *testing.T) {
			t.Parallel()
			redisPoolTimeout(t, withFair)
		})
	}
}

// redisPoolTimeout is TestRedisPoolTimeoutIs503 with fair dispatch or
// without: task look-ups and enqueues at once.
func redisPoolTimeout(t *testing.T, withFair bool) {
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 2, PoolTimeout: 200 * time.Millisecond, ReadTimeout: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	b := setupOn(t, srv.Addr(), nil, func(o *httpapi.Options) {
		o.RequestTimeout = 3 * time.Second
		o.Catalog = &stickyCatalog{Catalog: o.Catalog, owners: map[string]string{}, slugs: map[string]tenantctx.Tenant{}}
		var admission []tasks.Option
		if withFair {
			d := fair.New(rdb, fair.Config{MinPending: 1})
			admission = append(admission, tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: o.Catalog}))
		}
		o.Enqueuer = tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb),
			slog.New(slog.DiscardHandler), admission...)
	})
	acme := b.active(t, "acme")
	r := b.do(t, request{method: http.MethodPost, path: "/v1/invoices/1/pdf", host: acme.host(), bearer: acme.key})
	wantStatus(t, r, http.StatusAccepted)
	get := request{method: http.MethodGet, path: "/v1/tasks/" + r.json(t)["task_id"].(string), host: acme.host(), bearer: acme.key}
	wantStatus(t, b.do(t, get), http.StatusOK)

	answered, resume := stopRedis(t, b.rdb, srv.Addr())
	const n = 6
	var wg sync.WaitGroup
	rs := make([]response, n)
	for i := range n {
		rq := get
		if i%2 == 1 {
			rq = request{method: http.MethodPost, path: "/v1/invoices/" + strconv.Itoa(i+2) + "/pdf", host: acme.host(), bearer: acme.key}
		}
		wg.Go(func() { rs[i] = b.doWithin(t, rq) })
	}
	wg.Wait()
	if answered() {
		t.Fatal("Redis answered before the requests did: it was not stopped")
	}
	resume()
	for i, r := range rs {
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Errorf("request %d of %d while Redis answers nothing: %d Retry-After %q %s, want 503 with Retry-After",
				i+1, n, r.status, r.header.Get("Retry-After"), r.body)
		}
	}
}
