package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStartTimeout bounds how long redis-server may take to answer PING.
const redisStartTimeout = 15 * time.Second

// redisInstallHint is appended to every "no Redis" failure.
const redisInstallHint = "install Debian package redis-server (apt-get install redis-server)"

// RedisOptions configures a server started by StartRedis. The zero value is
// a server without persistence.
type RedisOptions struct {
	// AppendOnly turns on the append-only file (appendonly yes), so data
	// written before Stop or Restart is there again after Start.
	AppendOnly bool
}

// RedisServer is a dedicated redis-server on 127.0.0.1 for one test. Stop,
// Start and Restart keep the port and the data directory.
type RedisServer struct {
	bin     string
	opts    RedisOptions
	dir     string
	logPath string
	port    int // set before the server is handed out, then fixed

	mu   sync.Mutex
	proc *process // nil while stopped
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
	bin, ok := findBinary("redis-server", "/usr/bin")
	if !ok {
		t.Fatalf("testenv: find redis-server on PATH or in /usr/bin: not found; %s", redisInstallHint)
	}
	dir, err := makeTempDir(tempRoot(), "redis")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s := &RedisServer{bin: bin, opts: opts, dir: dir, logPath: filepath.Join(dir, "redis.log")}
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
	if err := s.startNewPort(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return s
}

// startNewPort starts the server on a free port, retrying once with another
// port when the first one was taken in the meantime.
func (s *RedisServer) startNewPort() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if s.port, err = freePort(); err != nil {
			return err
		}
		if err = s.startLocked(); err == nil || !errors.Is(err, errAddressInUse) {
			return err
		}
	}
	return err
}

// startLocked starts redis-server on s.port and waits for PING. s.mu must be held.
func (s *RedisServer) startLocked() error {
	if s.proc != nil {
		return nil
	}
	appendOnly := "no"
	if s.opts.AppendOnly {
		appendOnly = "yes"
	}
	logStart, _ := os.Stat(s.logPath)
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", appendOnly,
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
	}
	proc, err := startProcess(s.bin, args, s.dir, s.logPath, syscall.SIGTERM)
	if err != nil {
		return err
	}
	if err := waitRedis(proc, s.Addr()); err != nil {
		proc.kill()
		log := readLogSince(s.logPath, logStart)
		if strings.Contains(log, "already in use") {
			err = fmt.Errorf("%w: %w", errAddressInUse, err)
		}
		return fmt.Errorf("start redis-server on port %d: %w\nserver log:\n%s", s.port, err, log)
	}
	s.proc = proc
	return nil
}

// waitRedis polls until the server answers PING, exits, or redisStartTimeout
// passes. It waits for the port with plain TCP dials first: a go-redis pool
// whose dials fail logs each failure and keeps a retry goroutine alive.
func waitRedis(proc *process, addr string) error {
	deadline := time.Now().Add(redisStartTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		if proc.exited() {
			return fmt.Errorf("server exited: %v", proc.waitErr)
		}
		if lastErr = pingRedis(addr); lastErr == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("no answer to PING after %s: %w", redisStartTimeout, lastErr)
}

// pingRedis checks that addr accepts connections, then sends one PING.
func pingRedis(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	_ = conn.Close()

	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1})
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return client.Ping(ctx).Err() // fails with LOADING while the AOF is read
}

// Addr returns the server's address, "127.0.0.1:port".
func (s *RedisServer) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns the server's URL, "redis://127.0.0.1:port".
func (s *RedisServer) URL() string {
	return "redis://" + s.Addr()
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startLocked(); err != nil {
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
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	err := s.proc.stop()
	s.proc = nil
	if err != nil {
		return fmt.Errorf("stop redis-server on port %d: %w", s.port, err)
	}
	return nil
}

// errAddressInUse marks a start that failed because the port was taken.
var errAddressInUse = errors.New("address already in use")
