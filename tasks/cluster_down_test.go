package tasks

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestEnqueueIntoAClusterSlotNotServedIsARefusalForNow: a Redis Cluster
// whose queue's hash slot has no master serving it answers the enqueue's
// script with CLUSTERDOWN while every node answers its PING (a keyless
// command). asynq reports the reply as text only; the Enqueuer's error
// must carry it as a Redis error, so that the HTTP API answers 503 with
// Retry-After, as for READONLY or OOM, instead of 500.
func TestEnqueueIntoAClusterSlotNotServedIsARefusalForNow(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	rdb := c.ClientT(t)
	enq := NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger())
	ctx := testContext(t)
	if _, err := enq.Enqueue(ctx, InvoicePDF{TenantID: "tn_down", InvoiceID: 1}); err != nil {
		t.Fatalf("enqueue on the healthy cluster: %v", err)
	}
	m, slot, err := c.MasterOf(ctx, "asynq:{"+QueueDefault+"}:pending")
	if err != nil {
		t.Fatal(err)
	}
	node := m.NewClient(redis.Options{})
	t.Cleanup(func() { _ = node.Close() })
	if err := node.ClusterDelSlots(ctx, slot).Err(); err != nil {
		t.Fatalf("CLUSTER DELSLOTS %d: %v", slot, err)
	}
	t.Cleanup(func() { _ = node.ClusterAddSlots(context.Background(), slot).Err() })

	_, err = enq.Enqueue(ctx, InvoicePDF{TenantID: "tn_down", InvoiceID: 2})
	if err == nil {
		t.Fatal("enqueue into a slot no master serves succeeded")
	}
	if !redis.HasErrorPrefix(err, "CLUSTERDOWN") {
		t.Fatalf("enqueue into a slot no master serves: %v; want CLUSTERDOWN in the chain as a Redis error", err)
	}
}
