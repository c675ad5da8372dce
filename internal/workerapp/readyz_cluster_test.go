package workerapp

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestReadyzClusterMasterDown: with one master of a Redis Cluster down
// (its slots not taken over by a replica: cluster-node-timeout is longer
// than the test), the queues on it are served by nobody, and every
// /readyz answers 503 naming redis; a go-redis cluster PING, retried on
// another node when the first does not answer, answered 200 to all of
// them. Once the master is back, /readyz is 200 again.
func TestReadyzClusterMasterDown(t *testing.T) {
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{NodeTimeout: time.Minute})
	w := startWorker(t, c.URL(), map[string]string{"SCHEDULER_ENABLED": "false"})
	url := "http://" + w.addr + "/readyz"
	waitReady(t, url, "cluster up")
	victim := c.KillMasterOf(t, "asynq:{"+tasks.QueueDefault+"}:pending")
	const probes = 12
	ok := 0
	for range probes {
		if code, _ := get(t, url); code == 200 {
			ok++
		}
	}
	if ok > 0 {
		t.Errorf("/readyz answered 200 to %d of %d probes with the master of %s down", ok, probes, tasks.QueueDefault)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := victim.Start(ctx); err != nil {
		t.Fatalf("restart the master: %v", err)
	}
	waitReady(t, url, "master back")
}

// TestReadyzClusterFailover: once a replica took over a dead master's
// slots, /readyz is 200 again, though the dead master stays down.
func TestReadyzClusterFailover(t *testing.T) {
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	w := startWorker(t, c.URL(), map[string]string{"SCHEDULER_ENABLED": "false"})
	url := "http://" + w.addr + "/readyz"
	waitReady(t, url, "cluster up")
	c.KillMasterOf(t, "asynq:{"+tasks.QueueDefault+"}:pending")
	c.WaitHealthyT(t)
	waitReady(t, url, "replica promoted")
}
