package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/redisserver"
)

// clusterTimeout bounds creating a cluster and each wait for it to heal.
const clusterTimeout = 2 * time.Minute

// RedisClusterOptions configures StartRedisCluster. The zero value is
// three masters with one replica each and a cluster-node-timeout of
// redisserver.DefaultClusterNodeTimeout (1.5 s).
type RedisClusterOptions struct {
	// NodeTimeout is cluster-node-timeout; 0 means the default.
	NodeTimeout time.Duration
	// TLS makes every node TLS-only with a new test CA's certificate
	// (WriteTLSFiles), its cluster bus and replication included: URL is
	// then a rediss-cluster:// URL, TLSFiles the CA a client must trust.
	TLS bool
}

// RedisCluster is a real Redis Cluster for one test (a
// redisserver.Cluster): six redis-server processes on free loopback
// ports, three masters and three replicas.
type RedisCluster struct {
	*redisserver.Cluster
	// TLSFiles are the TLS cluster's test CA and certificate (the CA is
	// what a client's SSL_CERT_FILE must name); nil without
	// RedisClusterOptions.TLS.
	TLSFiles *TLSFiles
	t        testing.TB
}

// StartRedisCluster starts a Redis Cluster for this test and stops it in
// t.Cleanup. It fails the test, with the reason, when the cluster cannot
// be made (no redis-server or redis-cli, a node that does not start, a
// cluster that does not become healthy); it never skips.
func StartRedisCluster(t testing.TB, opts RedisClusterOptions) *RedisCluster {
	t.Helper()
	bin, err := redisserver.FindBinary()
	if err != nil {
		t.Fatalf("testenv: %v; %s", err, redisInstallHint)
	}
	dir, err := makeTempDir(tempRoot(), "rcluster")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	var files *TLSFiles
	if opts.TLS {
		f := WriteTLSFiles(t, dir)
		files = &f
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	c, err := redisserver.StartCluster(ctx, redisserver.ClusterOptions{Dir: dir, Bin: bin, NodeTimeout: opts.NodeTimeout, TLS: files.redisTLS()})
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("testenv: start a redis cluster: %v; %s", err, redisInstallHint)
	}
	rc := &RedisCluster{Cluster: c, TLSFiles: files, t: t}
	registerServer(rc)
	t.Cleanup(func() {
		unregisterServer(rc)
		if err := rc.shutdown(); err != nil {
			t.Errorf("testenv: %v", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("testenv: remove %s: %v", dir, err)
		}
	})
	return rc
}

// shutdown stops every node (t.Cleanup and Main).
func (c *RedisCluster) shutdown() error { return c.Stop(context.Background()) }

// ClientT returns a cluster client (Cluster.Client) closed in t.Cleanup.
func (c *RedisCluster) ClientT(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rdb := c.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// KillMasterOf kills (SIGKILL) the master serving key's slot and returns
// it.
func (c *RedisCluster) KillMasterOf(t testing.TB, key string) *redisserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, slot, err := c.MasterOf(ctx, key)
	if err != nil {
		t.Fatalf("testenv: master of %q: %v", key, err)
	}
	t.Logf("testenv: killing master %s (slot %d of %q)", m.Addr(), slot, key)
	m.Kill()
	return m
}

// WaitHealthyT waits until a replica took over every dead master's slots
// (Cluster.WaitHealthy), failing the test after two minutes.
func (c *RedisCluster) WaitHealthyT(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}
