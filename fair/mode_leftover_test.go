package fair_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestPlainInterludeLeavesNoStateOfTenantsErasedMeanwhile: with
// FAIR_DISPATCH=false no dispatcher forgets an erased tenant (the
// processes have none), so what fair dispatch kept of a tenant before the
// switch to plain (its policy, virtual time and measured costs, a hold)
// must not outlive the plain interlude: once back in fair mode, nothing in
// Redis names a tenant erased meanwhile. A tenant still there gets its
// state back from its next enqueue.
func TestPlainInterludeLeavesNoStateOfTenantsErasedMeanwhile(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	if err := fair.ClaimMode(ctx, b.rdb, fair.ModeFair); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, "tn_erased", fair.Policy{Weight: 3, MaxRunning: 2}, 0, 3)
	enqueue(t, b, "tn_kept", fair.Policy{Weight: 1}, 0, 2)
	work(t, b, 5, equalCost)
	if _, err := b.d.Hold(ctx, "tn_erased", fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	if _, err := b.d.SwitchMode(ctx, fair.ModePlain, q); err != nil {
		t.Fatalf("SwitchMode(plain) with nothing waiting: %v", err)
	}
	// tn_erased is erased while every process runs without a dispatcher:
	// nothing calls Forget. Then back to fair.
	if _, err := b.d.SwitchMode(ctx, fair.ModeFair, q); err != nil {
		t.Fatal(err)
	}
	var left []string
	iter := b.rdb.Scan(ctx, 0, "fair:*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if strings.Contains(k, "tn_erased") {
			left = append(left, "key "+k)
			continue
		}
		var members []string
		switch typ, _ := b.rdb.Type(ctx, k).Result(); typ {
		case "hash":
			members, _ = b.rdb.HKeys(ctx, k).Result()
		case "zset":
			members, _ = b.rdb.ZRange(ctx, k, 0, -1).Result()
		case "set":
			members, _ = b.rdb.SMembers(ctx, k).Result()
		}
		for _, m := range members {
			if strings.Contains(m, "tn_erased") {
				left = append(left, k+" member "+m)
			}
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("state of a tenant erased during the plain interlude left in Redis without expiry: %v", left)
	}
	// The tenant still there is admitted and run as before.
	enqueue(t, b, "tn_kept", fair.Policy{Weight: 1}, 2, 1)
	if got := work(t, b, 1, func(string) time.Duration { return time.Millisecond }); len(got) != 1 {
		t.Fatalf("tn_kept after the interlude: ran %v", got)
	}
}

// TestSwitchToPlainDropsTenantStateOnCluster: on a Redis Cluster the
// switch to plain finds and drops the tenants' state of each queue on the
// master holding the queue's slot, and leaves the queue-wide state.
func TestSwitchToPlainDropsTenantStateOnCluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	rdb := c.ClientT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	queues := []string{"critical", "default", "low"}
	for _, queue := range queues {
		p := "fair:{" + queue + "}:"
		if err := rdb.HSet(ctx, p+"t:tn_erased", "w", 1, "vt", 5).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.HSet(ctx, p+"hold", "tn_erased", "s").Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.HSet(ctx, p+"cost", "*", 1000).Err(); err != nil {
			t.Fatal(err)
		}
	}
	d := fair.New(rdb, fair.Config{})
	if _, err := d.SwitchMode(ctx, fair.ModePlain, queues...); err != nil {
		t.Fatalf("SwitchMode(plain): %v", err)
	}
	for _, queue := range queues {
		p := "fair:{" + queue + "}:"
		if n, err := rdb.Exists(ctx, p+"t:tn_erased", p+"hold").Result(); err != nil || n != 0 {
			t.Errorf("queue %s: %d of the tenant's keys left after the switch to plain (%v)", queue, n, err)
		}
		if n, err := rdb.Exists(ctx, p+"cost").Result(); err != nil || n != 1 {
			t.Errorf("queue %s: the queue's measured costs dropped (%d, %v)", queue, n, err)
		}
	}
}
