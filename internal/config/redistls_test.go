package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/childproc"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// startTLSRedis starts a redis-server that also listens with TLS (a test
// CA's certificate for localhost and 127.0.0.1) and returns it, its TLS
// port and the files.
func startTLSRedis(t *testing.T) (*testenv.RedisServer, int, testenv.TLSFiles) {
	t.Helper()
	files := testenv.WriteTLSFiles(t, t.TempDir())
	port, err := childproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartRedis(t, testenv.RedisOptions{ExtraArgs: []string{
		"--tls-port", strconv.Itoa(port),
		"--tls-cert-file", files.Cert, "--tls-key-file", files.Key, "--tls-ca-cert-file", files.CA,
		"--tls-auth-clients", "no",
	}})
	return srv, port, files
}

// TestRedissRefusesAnUntrustedCertificate: a rediss:// URL verifies the
// server's certificate; one signed by a CA the process does not trust is
// refused, not silently accepted.
func TestRedissRefusesAnUntrustedCertificate(t *testing.T) {
	t.Parallel()
	_, port, _ := startTLSRedis(t)
	opt, err := ParseRedisURL(fmt.Sprintf("rediss://localhost:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	defer rdb.Close()
	err = rdb.Ping(t.Context()).Err()
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("PING over TLS to a server with an untrusted certificate: %v, want a certificate error", err)
	}
}

// TestRedisURLUserIsUsed: redis:// and rediss:// URLs with a user (Redis
// ACLs, as managed Redis services hand out) authenticate as that user,
// with a password holding reserved characters percent-encoded.
func TestRedisURLUserIsUsed(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	const password = "p@ss:w/o%r#d?"
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	ctx := t.Context()
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">"+password, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	// The default user needs a password of its own, as on a managed
	// service: otherwise any AUTH <password> logs in as it.
	if err := admin.Do(ctx, "ACL", "SETUSER", "default", "resetpass", ">other-password").Err(); err != nil {
		t.Fatal(err)
	}
	raw := "redis://app:" + url.PathEscape(password) + "@" + srv.Addr() + "/0"
	raw = strings.ReplaceAll(raw, "#", "%23")
	opt, err := ParseRedisURL(raw)
	if err != nil {
		t.Fatalf("ParseRedisURL: %v", err)
	}
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	defer rdb.Close()
	who, err := rdb.Do(ctx, "ACL", "WHOAMI").Text()
	if err != nil {
		if strings.Contains(err.Error(), password) {
			t.Errorf("the error quotes the password: %v", err)
		}
		t.Fatalf("ACL WHOAMI through %s: %v", strings.ReplaceAll(raw, url.PathEscape(password), "xxxxx"), err)
	}
	if who != "app" {
		t.Fatalf("connected as %q, want app", who)
	}
}
