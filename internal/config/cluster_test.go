package config

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestClusterClientFollowsFailover: a client made from a redis-cluster://
// URL reaches a killed master's slots on the promoted replica by itself
// (go-redis's own 60 s slot-map reload would leave it on the dead address
// long after), and its pings (the readiness checks) keep answering.
func TestClusterClientFollowsFailover(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	opt, err := ParseRedisURL(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	defer rdb.Close()
	ctx := t.Context()
	const key = "{default}:probe"
	if err := rdb.Set(ctx, key, "before", 0).Err(); err != nil {
		t.Fatalf("SET before the failover: %v", err)
	}
	c.KillMasterOf(t, key)
	c.WaitHealthyT(t)
	healed := time.Now()
	var lastErr error
	for deadline := time.Now().Add(60 * time.Second); ; {
		if lastErr = rdb.Set(ctx, key, "after", 0).Err(); lastErr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET on the failed-over slot still failing 60 s after the cluster healed: %v", lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("writes to the failed-over slot succeed %.1fs after the cluster healed", time.Since(healed).Seconds())
	for i := range 50 {
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING #%d after the failover: %v", i, err)
		}
		if err := rdb.Get(ctx, key).Err(); err != nil {
			t.Fatalf("GET #%d after the failover: %v", i, err)
		}
	}
}
