package redisserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClusterFailover starts a 3-master, 3-replica cluster, writes a key,
// kills the master of its slot and waits until a replica serves it again.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	c, err := StartCluster(ctx, ClusterOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("StartCluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	if n := len(c.Nodes()); n != 6 {
		t.Fatalf("%d nodes, want 6", n)
	}
	masters, err := c.Masters(ctx)
	if err != nil || len(masters) != 3 {
		t.Fatalf("Masters = %d, %v; want 3", len(masters), err)
	}
	rdb := c.Client()
	defer rdb.Close()
	for i := range 100 {
		if err := rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET on the cluster: %v", err)
		}
	}
	// Asynchronous replication: give the replicas a moment, WAIT for it.
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.Do(ctx, "WAIT", 1, 5000).Err()
	}); err != nil {
		t.Fatalf("WAIT: %v", err)
	}
	victim, slot, err := c.MasterOf(ctx, "k7")
	if err != nil {
		t.Fatalf("MasterOf: %v", err)
	}
	begin := time.Now()
	victim.Kill()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("after killing %s (slot %d): %v", victim.Addr(), slot, err)
	}
	t.Logf("slot %d failed over from %s in %v (node timeout %v)", slot, victim.Addr(), time.Since(begin).Round(time.Millisecond), c.NodeTimeout())
	now, _, err := c.MasterOf(ctx, "k7")
	if err != nil || now == victim {
		t.Fatalf("MasterOf after failover = %v, %v", now, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := rdb.Get(ctx, "k7").Result()
		if err == nil {
			if v != "7" {
				t.Fatalf("k7 = %q after failover, want 7", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET k7 after failover: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
