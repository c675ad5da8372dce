package backend_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

const (
	// sentinelMaster is the name the Sentinel monitors the master under.
	sentinelMaster = "mymaster"
	// masterPassword is the master's (and replica's) requirepass, with
	// characters a URL must percent-encode.
	masterPassword = "m@ster:pw/#?&x"
	// sentinelUser and sentinelPassword are the Sentinel's ACL user.
	sentinelUser     = "watcher"
	sentinelPassword = "s3nt:nel@pw"
)

// sentinelDeployment is a master that requires a password, optionally a
// replica of it, and one Sentinel monitoring them (quorum 1).
type sentinelDeployment struct {
	master, replica, sentinel *testenv.RedisServer
	// tls is the TLS-only deployment's certificates; nil for a plain one.
	tls *testenv.TLSFiles
}

// startSentinelDeployment starts the deployment on free loopback ports.
// The Sentinel answers without a password until requireSentinelAuth.
func startSentinelDeployment(t *testing.T, withReplica bool) *sentinelDeployment {
	return startSentinelDeploymentTLS(t, withReplica, nil)
}

// startSentinelDeploymentTLS is startSentinelDeployment, with every server
// TLS-only when files is not nil: the master and the replica on their
// tls-port alone, the replica replicating over TLS, the Sentinel on its own
// tls-port and dialling them over TLS (tls-replication).
func startSentinelDeploymentTLS(t *testing.T, withReplica bool, files *testenv.TLSFiles) *sentinelDeployment {
	t.Helper()
	ctx := t.Context()
	var tlsArgs []string
	if files != nil {
		tlsArgs = []string{"--tls-replication", "yes"}
	}
	d := &sentinelDeployment{master: testenv.StartRedis(t, testenv.RedisOptions{TLS: files}), tls: files}
	// The password is set once the server answers: redisserver's start-up
	// check pings without one.
	setAuth := func(s *testenv.RedisServer) {
		t.Helper()
		c := s.NewClient(redis.Options{})
		defer c.Close()
		for _, kv := range [][2]string{{"masterauth", masterPassword}, {"requirepass", masterPassword}} {
			if err := c.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
				t.Fatalf("CONFIG SET %s on %s: %v", kv[0], s.Addr(), err)
			}
		}
	}
	if withReplica {
		d.replica = testenv.StartRedis(t, testenv.RedisOptions{TLS: files, ExtraArgs: append([]string{
			"--replicaof", "127.0.0.1", strings.TrimPrefix(d.master.Addr(), "127.0.0.1:"),
			"--masterauth", masterPassword,
		}, tlsArgs...)})
	}
	setAuth(d.master)
	if withReplica {
		c := d.replica.NewClient(redis.Options{})
		waitFor(t, "the replica's link to the master", func() error {
			info, err := c.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("link down")
			}
			return nil
		})
		_ = c.Close()
		setAuth(d.replica)
	}
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	port := strings.TrimPrefix(d.master.Addr(), "127.0.0.1:")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 1\nsentinel auth-pass %s %q\nsentinel down-after-milliseconds %s 1000\n",
		sentinelMaster, port, sentinelMaster, masterPassword, sentinelMaster)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.sentinel = testenv.StartRedis(t, testenv.RedisOptions{TLS: files, ConfigFile: conf, ExtraArgs: append([]string{"--sentinel"}, tlsArgs...)})
	if withReplica {
		sc := d.sentinelClient()
		defer sc.Close()
		waitFor(t, "the Sentinel to find the replica", func() error {
			rs, err := sc.Replicas(ctx, sentinelMaster).Result()
			if err != nil {
				return err
			}
			for _, r := range rs {
				if r["port"] == strings.TrimPrefix(d.replica.Addr(), "127.0.0.1:") && r["flags"] == "slave" && r["master-link-status"] == "ok" {
					return nil
				}
			}
			return fmt.Errorf("replicas %v", rs)
		})
	}
	return d
}

// sentinelClient is an admin client of the Sentinel; the caller closes it.
func (d *sentinelDeployment) sentinelClient() *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: d.sentinel.Addr(), TLSConfig: d.sentinel.TLSConfig()})
}

// requireSentinelAuth makes the Sentinel accept only sentinelUser.
func (d *sentinelDeployment) requireSentinelAuth(t *testing.T) {
	t.Helper()
	c := d.sentinel.NewClient(redis.Options{})
	defer c.Close()
	for _, args := range [][]any{
		{"ACL", "SETUSER", sentinelUser, "on", ">" + sentinelPassword, "+@all"},
		{"ACL", "SETUSER", "default", "resetpass", ">other-password"},
	} {
		if err := c.Do(t.Context(), args...).Err(); err != nil {
			t.Fatalf("%v on the Sentinel: %v", args[:3], err)
		}
	}
}

// url is a REDIS_URL of the deployment: master's password as a query
// parameter, DB 3 as the path, the Sentinel's user when withUser;
// rediss-sentinel:// for a TLS-only deployment.
func (d *sentinelDeployment) url(withUser bool) string {
	userinfo := ""
	if withUser {
		userinfo = sentinelUser + ":" + url.QueryEscape(sentinelPassword) + "@"
	}
	scheme := config.RedisSentinelScheme
	if d.tls != nil {
		scheme = config.RedisTLSSentinelScheme
	}
	return scheme + "://" + userinfo + d.sentinel.Addr() + "/3?master=" + sentinelMaster + "&password=" + url.QueryEscape(masterPassword)
}

// masterClient is an admin client of DB 3 on s.
func masterClient(s *testenv.RedisServer) *redis.Client {
	return s.NewClient(redis.Options{Password: masterPassword, DB: 3})
}

func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
}

// TestRedisSentinelURL: REDIS_URL=redis-sentinel://... (README: "Redis
// Sentinel" is supported) reaches a master that requires a password, in
// the DB the URL names, through a Sentinel with or without an ACL user,
// and the enqueuer's tasks land there.
func TestRedisSentinelURL(t *testing.T) {
	t.Parallel()
	d := startSentinelDeployment(t, false)
	mc := masterClient(d.master)
	defer mc.Close()
	check := func(t *testing.T, raw string) {
		t.Helper()
		ctx := t.Context()
		redacted := strings.NewReplacer(url.QueryEscape(masterPassword), "xxxxx", url.QueryEscape(sentinelPassword), "xxxxx").Replace(raw)
		_, rc, err := backend.OpenRedis(ctx, config.Config{RedisURL: raw})
		if err != nil {
			t.Fatalf("OpenRedis(%s): %v", redacted, err)
		}
		defer rc.Close()
		client := asynq.NewClientFromRedisClient(rc)
		defer client.Close()
		info, err := client.EnqueueContext(ctx, asynq.NewTask("probe", nil), asynq.Queue(tasks.QueueDefault))
		if err != nil {
			t.Fatalf("enqueue through %s: %v", redacted, err)
		}
		if n, err := mc.Exists(ctx, "asynq:{"+tasks.QueueDefault+"}:t:"+info.ID).Result(); err != nil || n != 1 {
			t.Fatalf("task %s in the master's DB 3: %d, %v", info.ID, n, err)
		}
	}
	t.Run("sentinel without auth", func(t *testing.T) { check(t, d.url(false)) })
	d.requireSentinelAuth(t)
	t.Run("sentinel with ACL user", func(t *testing.T) { check(t, d.url(true)) })
}

// TestRedisSentinelFailover: a worker and an enqueuer on a redis-sentinel://
// REDIS_URL keep working after the Sentinel promotes the replica (asked to,
// or because the master died): tasks enqueued after the failover land on
// the new master and are processed.
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	t.Run("SENTINEL FAILOVER", func(t *testing.T) { t.Parallel(); testRedisSentinelFailover(t, false) })
	t.Run("master stopped", func(t *testing.T) { t.Parallel(); testRedisSentinelFailover(t, true) })
}

func testRedisSentinelFailover(t *testing.T, stopMaster bool) {
	d := startSentinelDeployment(t, true)
	ctx := t.Context()
	p := startProbe(t, d.url(false), 16)
	rc, client, processed, waiter := p.rc, p.client, p.processed, p.waiter
	enqueueAndWait := func(payload string) {
		t.Helper()
		waitFor(t, "enqueue "+payload, func() error {
			_, err := client.EnqueueContext(ctx, asynq.NewTask("probe", []byte(payload)), asynq.Queue(tasks.QueueDefault))
			return err
		})
		select {
		case got := <-processed:
			if got != payload {
				t.Fatalf("processed %q, want %q", got, payload)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("task %q not processed within 60 s", payload)
		}
	}
	enqueueAndWait("before")

	sc := redis.NewSentinelClient(&redis.Options{Addr: d.sentinel.Addr()})
	defer sc.Close()
	if stopMaster {
		d.master.Stop(t)
	} else if err := sc.Failover(ctx, sentinelMaster).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	// The failover is over once the Sentinel switched the master's
	// address (+switch-master, what the failover client follows), not when
	// GET-MASTER-ADDR-BY-NAME first names the replica: the Sentinel answers
	// with the promoted replica from the moment it is promoted, while the
	// old master, still up after SENTINEL FAILOVER, stays a writable master
	// until the Sentinel converts it into a replica about 10 s later. A
	// task enqueued in between over a connection to the old master is
	// acknowledged there and dropped when it resyncs from the new one
	// (replication is asynchronous): Redis loses it, not the worker.
	waitFor(t, "the Sentinel to end the failover", func() error {
		m, err := sc.Master(ctx, sentinelMaster).Result()
		if err != nil {
			return err
		}
		if got := m["ip"] + ":" + m["port"]; got != d.replica.Addr() {
			return fmt.Errorf("master is %s (flags %s)", got, m["flags"])
		}
		return nil
	})
	// The client (and with it the worker's server) drops its connections
	// to the old master when it switches, so an answer from the new master
	// means none is left.
	waitFor(t, "the client to follow the switch", func() error {
		info, err := rc.Info(ctx, "server").Result()
		if err != nil {
			return err
		}
		if want := "tcp_port:" + strings.TrimPrefix(d.replica.Addr(), "127.0.0.1:"); !strings.Contains(info, want+"\r\n") {
			return fmt.Errorf("the client still talks to the old master")
		}
		return nil
	})
	promoted := time.Now()
	enqueueAndWait("after")
	t.Logf("task enqueued after the failover processed %.1fs after the promotion", time.Since(promoted).Seconds())
	nc := masterClient(d.replica)
	defer nc.Close()
	if role, err := nc.Do(ctx, "ROLE").Slice(); err != nil || role[0] != "master" {
		t.Fatalf("ROLE of the promoted replica: %v, %v", role, err)
	}
	// The wake-up subscription follows too: go-redis's switch closes the
	// old master's pooled connections but not subscriptions, and the old
	// master, still up after SENTINEL FAILOVER, drops its subscribers only
	// when the Sentinel makes it a replica, about 10 s later; until then
	// announcements on the new master would go unheard and idle workers
	// would find work only at IDLE_RECHECK_INTERVAL. The waiter sees the
	// client dial the new master and subscribes there at once: well within
	// 5 s of the client's switch, however busy the machine.
	waitWithin(t, 5*time.Second, promoted, "the idle waiter to subscribe on the new master", func() error {
		ch := fair.WakeChannel(tasks.QueueDefault)
		n, err := nc.PubSubNumSub(ctx, ch).Result()
		if err != nil {
			return err
		}
		if n[ch] != 1 || !waiter.Stats().Subscribed {
			return fmt.Errorf("%d subscribers of %s on the new master (the waiter subscribed: %v)", n[ch], ch, waiter.Stats().Subscribed)
		}
		return nil
	})
	t.Logf("the idle waiter subscribed on the new master %.1fs after the client's switch", time.Since(promoted).Seconds())
	// An announcement published on the new master now wakes the waiter.
	woken := waiter.Stats().Woken
	waitWithin(t, 5*time.Second, time.Now(), "an announcement on the new master to wake the waiter", func() error {
		if err := nc.Publish(ctx, fair.WakeChannel(tasks.QueueDefault), "").Err(); err != nil {
			return err
		}
		if got := waiter.Stats().Woken; got == woken {
			return fmt.Errorf("woken %d times, as before the announcement", got)
		}
		return nil
	})
}

// waitWithin waits for cond as waitFor does, and fails once limit has
// passed since start: for what must happen promptly, not eventually.
func waitWithin(t *testing.T, limit time.Duration, start time.Time, what string, cond func() error) {
	t.Helper()
	var err error
	for ; ; time.Sleep(50 * time.Millisecond) {
		if err = cond(); err == nil {
			return
		}
		if time.Since(start) > limit {
			t.Fatalf("waiting for %s: not within %v: %v", what, limit, err)
		}
	}
}

// probe is a worker's side of Redis through one REDIS_URL, as the worker
// opens it: the shared client, an asynq client, an asynq server that sends
// every task's payload to processed, and an idle worker's wake-up
// subscription (worker.IdleWait adds its hook to the shared client).
type probe struct {
	rc        redis.UniversalClient
	client    *asynq.Client
	processed chan string
	waiter    *fair.IdleWaiter
}

// startProbe opens raw with backend.OpenRedis and starts a probe on it,
// stopped when t ends.
func startProbe(t *testing.T, raw string, buffer int) probe {
	t.Helper()
	opt, rc, err := backend.OpenRedis(t.Context(), config.Config{RedisURL: raw})
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	p := probe{rc: rc, client: asynq.NewClientFromRedisClient(rc), processed: make(chan string, buffer)}
	t.Cleanup(func() { _ = p.client.Close() })
	srv := asynq.NewServerFromRedisClient(rc, worker.ServerConfig(worker.ServerOptions{Concurrency: 1, Logger: quietLogger(), ShutdownTimeout: 5 * time.Second}))
	if err := srv.Start(asynq.HandlerFunc(func(_ context.Context, task *asynq.Task) error {
		p.processed <- string(task.Payload())
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	_, waiter, stopWaiting := worker.IdleWait(rc, worker.ServerOptions{Concurrency: 1, Logger: quietLogger(), RedisSentinel: config.IsRedisSentinel(opt)}, 0)
	t.Cleanup(stopWaiting)
	p.waiter = waiter
	return p
}
