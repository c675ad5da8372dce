package integration

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/childproc"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestStackOverTLSRedis runs the enqueue service and a worker with a
// rediss:// REDIS_URL (a Redis ACL user whose password holds reserved
// characters, percent-encoded) on a redis-server whose certificate a
// private CA signed, supplied to the processes with SSL_CERT_FILE (see
// README, "Configuration"): provisioning, a PDF render through fair
// dispatch (its scripts) with workers subscribed to its announcements, and
// no password in any log. A process that does not trust the CA refuses to
// start.
func TestStackOverTLSRedis(t *testing.T) {
	t.Parallel()
	files := testenv.WriteTLSFiles(t, t.TempDir())
	tlsPort, err := childproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartRedis(t, testenv.RedisOptions{ExtraArgs: []string{
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", files.Cert, "--tls-key-file", files.Key, "--tls-ca-cert-file", files.CA,
		"--tls-auth-clients", "no",
	}})
	const password = "s3:cr@t/p%ss#1"
	admin := newRedisAdmin(t, srv.Addr())
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "app", "on", ">"+password, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	redisURL := fmt.Sprintf("rediss://app:%s@localhost:%d", url.QueryEscape(password), tlsPort)
	s := newStack(t, stackOptions{redis: srv, env: map[string]string{
		"REDIS_URL":     redisURL,
		"SSL_CERT_FILE": files.CA,
	}})
	tn := s.provision(tenantSlugs("tlsredis", 1), tenantName)[0]
	s.seed(tn, invoiceSeed{overdue: 1, lines: 2})
	pdf := s.mustPost(tn, "pdf", 1)
	s.waitCompleted(pdf.Queue, []string{pdf.TaskID}, 90*time.Second)

	// The worker's subscription to the dispatcher's announcements is on
	// the TLS port, as user app.
	ctx := context.Background()
	n, err := admin.PubSubNumSub(ctx, fair.WakeChannel(tasks.QueueDefault)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n[fair.WakeChannel(tasks.QueueDefault)] == 0 {
		t.Errorf("no subscriber to %s", fair.WakeChannel(tasks.QueueDefault))
	}
	clients, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(clients, "user=app") {
		t.Errorf("no client logged in as app:\n%s", clients)
	}
	for _, p := range append(s.workers, s.enqueue) {
		if log := p.logText(); strings.Contains(log, password) || strings.Contains(log, url.QueryEscape(password)) {
			t.Errorf("%s's log holds the Redis password", p.name)
		}
		if p.logContains("lost the subscription") {
			t.Errorf("%s lost its subscription: %s", p.name, p.logTail(20))
		}
	}

	// Without the CA the certificate is refused and the process stops.
	env := s.env(map[string]string{"REDIS_URL": redisURL, "SSL_CERT_FILE": os.DevNull, "OUTBOX_DIR": t.TempDir()})
	w := startProc(t, "worker-untrusting", testenv.BuildBinary(t, workerPkg), env)
	eventually(t, 60*time.Second, 100*time.Millisecond, "the untrusting worker exits", func() error {
		if w.running() {
			return errNotYet
		}
		return nil
	})
	if log := w.logText(); !strings.Contains(log, "certificate") || strings.Contains(log, password) {
		t.Errorf("untrusting worker's log: want a certificate error without the password:\n%s", log)
	}
}

// newRedisAdmin is a client of addr's plain port for the test's checks.
func newRedisAdmin(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
