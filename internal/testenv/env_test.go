package testenv_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// childEnv selects what TestChildProcess does when this test binary is run
// again as a child process by runChild.
const childEnv = "TESTENV_CHILD"

// TestChildProcess is not a test on its own: runChild re-runs this test
// binary with childEnv set, and then this function exercises testenv under
// the child's environment (TEST_DATABASE_URL, TEST_REDIS_URL). In a normal
// run it does nothing.
func TestChildProcess(t *testing.T) {
	ctx := context.Background()
	switch os.Getenv(childEnv) {
	case "":
		return
	case "postgres":
		for i := range 2 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				conn, err := pgx.Connect(ctx, testenv.Postgres(t))
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer conn.Close(ctx)
				var db string
				var port int
				if err := conn.QueryRow(ctx, "SELECT current_database(), inet_server_port()").Scan(&db, &port); err != nil {
					t.Fatalf("query: %v", err)
				}
				fmt.Printf("database=%s port=%d\n", db, port)
			})
		}
	case "redis":
		// The first test takes DB 1 through RedisURL, the second DB 2
		// through Redis (which can only return the address).
		t.Run("url", func(t *testing.T) {
			url := testenv.RedisURL(t)
			opt, err := redis.ParseURL(url)
			if err != nil {
				t.Fatalf("parse %s: %v", url, err)
			}
			c := redis.NewClient(opt)
			defer c.Close()
			n, err := c.DBSize(ctx).Result()
			if err != nil {
				t.Fatalf("dbsize: %v", err)
			}
			fmt.Printf("url=%s keys=%d\n", url, n)
		})
		t.Run("addr", func(t *testing.T) {
			fmt.Printf("addr=%s\n", testenv.Redis(t))
		})
	default:
		t.Fatalf("unknown %s=%q", childEnv, os.Getenv(childEnv))
	}
}

// runChild runs TestChildProcess in a new process of this test binary with
// the given mode and extra environment, and returns its output and whether
// it passed.
func runChild(t *testing.T, mode string, env ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("run child: %v", err)
		}
	}
	return string(out), err == nil
}

func TestPostgresUsesTestDatabaseURL(t *testing.T) {
	t.Parallel()
	srv := testenv.StartPostgres(t)

	out, ok := runChild(t, "postgres", "TEST_DATABASE_URL="+srv.URL())
	if !ok {
		t.Fatalf("child failed:\n%s", out)
	}
	want := fmt.Sprintf("port=%d", srv.Port())
	if n := strings.Count(out, want); n != 2 {
		t.Fatalf("child output has %q %d times, want 2 (both databases on TEST_DATABASE_URL's server):\n%s", want, n, out)
	}

	// The child's databases were dropped when its tests ended.
	ctx := testContext(t)
	conn := connect(t, ctx, srv.URL())
	var left int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname LIKE 't\\_%'").Scan(&left); err != nil {
		t.Fatalf("count databases: %v", err)
	}
	if left != 0 {
		t.Fatalf("%d test databases left on the server after the child ended", left)
	}
}

func TestPostgresFailureFailsEveryTest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		url    string
		reason string
	}{
		{name: "unparsable URL", url: "postgres://%zz", reason: "parse TEST_DATABASE_URL"},
		{name: "unreachable server", url: "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2", reason: "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, ok := runChild(t, "postgres", "TEST_DATABASE_URL="+tt.url)
			if ok {
				t.Fatalf("child passed with TEST_DATABASE_URL=%s:\n%s", tt.url, out)
			}
			if n := strings.Count(out, "--- FAIL: TestChildProcess/"); n != 2 {
				t.Fatalf("%d subtests failed, want both:\n%s", n, out)
			}
			if n := strings.Count(out, tt.reason); n < 2 {
				t.Fatalf("reason %q appears %d times, want once per failed test:\n%s", tt.reason, n, out)
			}
		})
	}
}

func TestRedisUsesTestRedisURL(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := testenv.StartRedis(t, testenv.RedisOptions{})

	// Leave a key in DB 1 and DB 2: the child must find both flushed.
	for _, db := range []int{1, 2} {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DB: db})
		if err := c.Set(ctx, "stale", "x", 0).Err(); err != nil {
			t.Fatalf("set in db %d: %v", db, err)
		}
		_ = c.Close()
	}

	out, ok := runChild(t, "redis", "TEST_REDIS_URL="+srv.URL())
	if !ok {
		t.Fatalf("child failed:\n%s", out)
	}
	for _, want := range []string{
		fmt.Sprintf("url=%s/1 keys=0", srv.URL()),
		fmt.Sprintf("addr=%s", srv.Addr()),
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("child output lacks %q:\n%s", want, out)
		}
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DB: 2})
	t.Cleanup(func() { _ = c.Close() })
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("db 2 after the child: dbsize = %d, %v; want 0 (flushed when handed out)", n, err)
	}
}
