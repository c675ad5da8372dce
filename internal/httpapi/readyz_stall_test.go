package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestReadyzBoundedWithRedisStalled: a Redis that accepts and answers
// nothing (SIGSTOP) makes /readyz answer 503 within its 2 s bound.
func TestReadyzBoundedWithRedisStalled(t *testing.T) {
	rs := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()}) // go-redis defaults, as asynq's URI parsing makes
	t.Cleanup(func() { _ = rdb.Close() })
	b := setup(t, func(o *httpapi.Options) { o.Redis = rdb })
	wantStatus(t, b.do(t, request{method: http.MethodGet, path: "/readyz"}), http.StatusOK)
	resume := testenv.StopRedis(t, rdb)
	defer resume()
	start := time.Now()
	r := b.do(t, request{method: http.MethodGet, path: "/readyz"})
	d := time.Since(start)
	wantStatus(t, r, http.StatusServiceUnavailable)
	// Unbounded, the answer waited for go-redis's own read timeout and
	// retry (5 s); 4 s leaves a loaded machine room past the 2 s bound.
	if d > 4*time.Second {
		t.Errorf("/readyz with Redis stalled answered after %v, want within about 2s", d)
	}
}
