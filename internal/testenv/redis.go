package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/redisserver"
)

// redisStartTimeout bounds flushing a TEST_REDIS_URL database (starting a
// dedicated server is bounded by redisserver).
const redisStartTimeout = time.Minute

// redisInstallHint is appended to every "no Redis" failure.
const redisInstallHint = "install Debian package redis-server (apt-get install redis-server)"

// RedisOptions configures a server started by StartRedis. The zero value is
// a server without persistence.
type RedisOptions struct {
	// AppendOnly turns on the append-only file (appendonly yes), so data
	// written before Stop or Restart is there again after Start.
	AppendOnly bool
	// ExtraArgs are appended to redis-server's command line (e.g. the TLS
	// settings of a test of rediss:// URLs).
	ExtraArgs []string
	// ConfigFile, when set, is a configuration file passed before the
	// other arguments (a Sentinel's sentinel.conf, with ExtraArgs
	// "--sentinel").
	ConfigFile string
	// TLS, when set, makes the server TLS-only: its one port (Addr) is a
	// TLS port with TLS's certificate (redisserver.Options.TLS). Add
	// "--tls-replication yes" to ExtraArgs for a replica or a Sentinel
	// that dials TLS-only servers.
	TLS *TLSFiles
}

// RedisServer is a dedicated redis-server on 127.0.0.1 for one test (a
// redisserver.Server). Stop, Start and Restart keep the port and the data
// directory.
type RedisServer struct {
	dir string

	mu  sync.Mutex
	srv *redisserver.Server // nil until started
}

// Redis starts a dedicated real redis-server for this test on a free loopback
// port and returns its address "127.0.0.1:port"; it is stopped in t.Cleanup.
//
// When TEST_REDIS_URL is set, Redis uses that server instead: it hands out
// DB indexes 1..15 round robin, runs FLUSHDB on the chosen one, and returns
// the server's address. An address cannot carry a DB index, so tests that
// need isolation on a shared server must use RedisURL; and with more than 15
// tests running at once, indexes are shared.
func Redis(t testing.TB) string {
	t.Helper()
	addr, _ := redisTarget(t)
	return addr
}

// RedisURL is Redis returning "redis://host:port/db" instead, which also
// names the DB index when TEST_REDIS_URL is set (DB 0 on a dedicated server).
func RedisURL(t testing.TB) string {
	t.Helper()
	addr, db := redisTarget(t)
	return fmt.Sprintf("redis://%s/%d", addr, db)
}

// externalRedisDB is the round-robin counter for TEST_REDIS_URL DB indexes.
var externalRedisDB atomic.Uint32

// redisTarget returns the address and DB index a test should use.
func redisTarget(t testing.TB) (addr string, db int) {
	t.Helper()
	raw := os.Getenv("TEST_REDIS_URL")
	if raw == "" {
		return StartRedis(t, RedisOptions{}).Addr(), 0
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("testenv: parse TEST_REDIS_URL: %v", err)
	}
	opt.DB = int(externalRedisDB.Add(1)-1)%15 + 1
	client := redis.NewClient(opt)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), redisStartTimeout)
	defer cancel()
	if err := client.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("testenv: flush db %d of TEST_REDIS_URL server %s: %v", opt.DB, opt.Addr, err)
	}
	return opt.Addr, opt.DB
}

// StartRedis starts a dedicated redis-server for this test (always its own,
// whatever TEST_REDIS_URL says) and stops it in t.Cleanup.
func StartRedis(t testing.TB, opts RedisOptions) *RedisServer {
	t.Helper()
	bin, err := redisserver.FindBinary()
	if err != nil {
		t.Fatalf("testenv: %v; %s", err, redisInstallHint)
	}
	dir, err := makeTempDir(tempRoot(), "redis")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s := &RedisServer{dir: dir}
	registerServer(s)
	t.Cleanup(func() {
		unregisterServer(s)
		if err := s.shutdown(); err != nil {
			t.Errorf("testenv: %v", err)
		}
		if err := os.RemoveAll(s.dir); err != nil {
			t.Errorf("testenv: remove %s: %v", s.dir, err)
		}
	})
	srv, err := redisserver.Start(context.Background(), redisserver.Options{Dir: dir, AppendOnly: opts.AppendOnly, Bin: bin, ExtraArgs: opts.ExtraArgs, ConfigFile: opts.ConfigFile, TLS: opts.TLS.redisTLS()})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return s
}

// Addr returns the server's address, "127.0.0.1:port".
func (s *RedisServer) Addr() string {
	return s.srv.Addr()
}

// URL returns the server's URL, "redis://127.0.0.1:port" ("rediss://" for
// a TLS-only server).
func (s *RedisServer) URL() string {
	return s.srv.URL()
}

// TLSConfig returns a client TLS configuration trusting the CA of a
// TLS-only server (RedisOptions.TLS); nil for a plain server.
func (s *RedisServer) TLSConfig() *tls.Config {
	return s.srv.TLSConfig()
}

// NewClient returns a go-redis client of the server with opts' other
// settings (over TLS, trusting its CA, for a TLS-only server); the caller
// closes it.
func (s *RedisServer) NewClient(opts redis.Options) *redis.Client {
	return s.srv.NewClient(opts)
}

// Stop stops the server (SIGTERM, which writes the append-only file when
// enabled) and waits for it to exit. Stopping a stopped server does nothing.
func (s *RedisServer) Stop(t testing.TB) {
	t.Helper()
	if err := s.shutdown(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// Start starts a stopped server again on the same port and directory and
// waits until it answers PING. Starting a running server does nothing.
func (s *RedisServer) Start(t testing.TB) {
	t.Helper()
	if err := s.srv.Start(context.Background()); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// Restart stops and starts the server. Data survives only with AppendOnly.
func (s *RedisServer) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.Start(t)
}

// shutdown stops the server (Stop, t.Cleanup and Main).
func (s *RedisServer) shutdown() error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Stop(context.Background())
}
