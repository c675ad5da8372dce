package backend_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// tlsChildURLEnv names the REDIS_URL TestRedisTLSChild works through: set
// only in the child process runTLSChild starts.
const tlsChildURLEnv = "TENANTWORKER_TEST_TLS_REDIS_URL"

// TestRedisTLSClusterURL: REDIS_URL=rediss-cluster://... works with a
// Redis Cluster whose nodes listen with TLS alone (cluster bus and
// replication over TLS too) and whose certificates a private CA signed,
// supplied with SSL_CERT_FILE as the README says: a task is enqueued and
// processed by the worker's asynq server, and an idle worker's wake-up
// subscription is woken. Without the CA, and with the plain
// redis-cluster:// URL, the start-up ping fails with the reason.
func TestRedisTLSClusterURL(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{TLS: true})
	// Seeds by name, nodes of the slot map by address: each dial is
	// verified against its own host.
	raw := strings.ReplaceAll(c.URL(), "127.0.0.1:", "localhost:")
	if !strings.HasPrefix(raw, config.RedisTLSClusterScheme+"://") {
		t.Fatalf("TLS cluster URL %q", raw)
	}
	checkTLSRefusals(t, raw, "redis-cluster://"+strings.TrimPrefix(raw, config.RedisTLSClusterScheme+"://"), "")
	runTLSChild(t, raw, c.TLSFiles.CA)
}

// TestRedisTLSSentinelURL: REDIS_URL=rediss-sentinel://... works with a
// Sentinel, a master and a replica that all listen with TLS alone (the
// Sentinel dials them, and the replica its master, over TLS), with a
// Sentinel ACL user and a master password: TLS applies to the Sentinel and
// to the master alike. As TestRedisTLSClusterURL otherwise.
func TestRedisTLSSentinelURL(t *testing.T) {
	t.Parallel()
	files := testenv.WriteTLSFiles(t, t.TempDir())
	d := startSentinelDeploymentTLS(t, true, &files)
	d.requireSentinelAuth(t)
	// The Sentinel by name, the master by the address it reports.
	raw := strings.Replace(d.url(true), "@127.0.0.1:", "@localhost:", 1)
	checkTLSRefusals(t, raw, "redis-sentinel://"+strings.TrimPrefix(raw, config.RedisTLSSentinelScheme+"://"), masterPassword)
	runTLSChild(t, raw, files.CA)
}

// checkTLSRefusals checks, in this process (which does not trust the test
// CA), that tlsURL is refused for the server's certificate and plainURL
// (the same servers without TLS) with a hint at the TLS forms, neither
// error quoting password. Each runs as a parallel subtest.
func checkTLSRefusals(t *testing.T, tlsURL, plainURL, password string) {
	t.Helper()
	// The URLs are not quoted: they hold passwords.
	for _, tc := range []struct{ name, raw, want string }{
		{"untrusted CA", tlsURL, "certificate"},
		// A failover client takes about 10 s to give up on Sentinels
		// that close every plain connection (go-redis's dial retries).
		{"plain URL", plainURL, "use rediss://, rediss-cluster:// or rediss-sentinel://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, rc, err := backend.OpenRedis(t.Context(), config.Config{RedisURL: tc.raw})
			if err == nil {
				_ = rc.Close()
				t.Fatal("OpenRedis: no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenRedis: %v, want an error naming %q", err, tc.want)
			}
			if password != "" && (strings.Contains(err.Error(), password) || strings.Contains(err.Error(), url.QueryEscape(password))) {
				t.Errorf("OpenRedis: the error quotes the password: %v", err)
			}
			t.Logf("%v", err)
		})
	}
}

// runTLSChild runs TestRedisTLSChild in a new process of this test binary
// with REDIS_URL raw and SSL_CERT_FILE ca: Go reads the system's CAs once
// per process, so this process, which must not trust the CA, cannot.
func runTLSChild(t *testing.T, raw, ca string) {
	t.Helper()
	t.Run("SSL_CERT_FILE", func(t *testing.T) { t.Parallel(); runTLSChildProcess(t, raw, ca) })
}

// runTLSChildProcess is runTLSChild's subtest.
func runTLSChildProcess(t *testing.T, raw, ca string) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRedisTLSChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), tlsChildURLEnv+"="+raw, "SSL_CERT_FILE="+ca, "SSL_CERT_DIR=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestRedisTLSChild") {
		t.Fatalf("the child process with SSL_CERT_FILE: %v\n%s", err, out)
	}
}

// TestRedisTLSChild is runTLSChild's child process (skipped otherwise):
// through the REDIS_URL in tlsChildURLEnv, trusting SSL_CERT_FILE's CA, a
// task is enqueued and processed by the worker's asynq server, and an
// announcement on the wake-up channel wakes an idle worker's subscription.
func TestRedisTLSChild(t *testing.T) {
	raw := os.Getenv(tlsChildURLEnv)
	if raw == "" {
		t.Skip("runs in TestRedisTLSClusterURL's and TestRedisTLSSentinelURL's child process")
	}
	ctx := t.Context()
	p := startProbe(t, raw, 1)
	rc, client, processed, waiter := p.rc, p.client, p.processed, p.waiter

	if _, err := client.EnqueueContext(ctx, asynq.NewTask("probe", []byte("over tls")), asynq.Queue(tasks.QueueDefault)); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	select {
	case got := <-processed:
		if got != "over tls" {
			t.Fatalf("processed %q", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("task not processed within 30 s")
	}
	woken := waiter.Stats().Woken
	waitFor(t, "an announcement to wake the idle waiter", func() error {
		if err := rc.Publish(ctx, fair.WakeChannel(tasks.QueueDefault), "").Err(); err != nil {
			return err
		}
		if s := waiter.Stats(); !s.Subscribed || s.Woken == woken {
			return fmt.Errorf("subscribed %v, woken %d times", s.Subscribed, s.Woken)
		}
		return nil
	})
}
