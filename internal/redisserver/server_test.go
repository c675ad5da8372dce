package redisserver

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Every test stops its servers, so no goroutine waiting on a
	// redis-server may remain.
	goleak.VerifyTestMain(m)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startServer starts a server in a test directory and stops it in
// t.Cleanup.
func startServer(t *testing.T, ctx context.Context, opts Options) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

// get returns the value of key ("" when the key is missing).
func get(t *testing.T, ctx context.Context, s *Server, key string) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	v, err := rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v
}

// set writes key=value.
func set(t *testing.T, ctx context.Context, s *Server, key, value string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	if err := rdb.Set(ctx, key, value, 0).Err(); err != nil {
		t.Fatalf("SET %s: %v", key, err)
	}
}

func TestStartAnswers(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := startServer(t, ctx, Options{})
	if s.URL() != "redis://"+s.Addr() || !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr %q, URL %q", s.Addr(), s.URL())
	}
	set(t, ctx, s, "k", "v")
	if got := get(t, ctx, s, "k"); got != "v" {
		t.Errorf("GET k = %q, want v", got)
	}
	if _, err := os.Stat(s.LogPath()); err != nil {
		t.Errorf("log: %v", err)
	}
}

func TestRestartKeepsPortAndAppendOnlyData(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := startServer(t, ctx, Options{AppendOnly: true})
	port := s.Port()
	set(t, ctx, s, "k", "v")
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.Port() != port {
		t.Errorf("port %d after restart, want %d", s.Port(), port)
	}
	if got := get(t, ctx, s, "k"); got != "v" {
		t.Errorf("GET k after restart = %q, want v", got)
	}
}

func TestWithoutAppendOnlyDataIsLost(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := startServer(t, ctx, Options{})
	set(t, ctx, s, "k", "v")
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := get(t, ctx, s, "k"); got != "" {
		t.Errorf("GET k after restart = %q, want nothing", got)
	}
}

func TestPortInUse(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Start(ctx, Options{Dir: t.TempDir(), Port: l.Addr().(*net.TCPAddr).Port})
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("Start on a taken port: %v, want ErrPortInUse", err)
	}
}

func TestStartNeedsDir(t *testing.T) {
	t.Parallel()
	if _, err := Start(testContext(t), Options{}); err == nil {
		t.Fatal("Start without Dir succeeded")
	}
}

// TestPortTakenByAnotherRedis: a Redis of someone else's answering on the
// port is not taken for the server Start launched.
func TestPortTakenByAnotherRedis(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	other, err := Start(ctx, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Stop(context.Background()) })
	_, err = Start(ctx, Options{Dir: t.TempDir(), Port: other.Port()})
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("Start on the port of another redis-server: %v, want ErrPortInUse", err)
	}
}
