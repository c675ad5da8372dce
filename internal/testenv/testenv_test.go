package testenv_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestMain(m *testing.M) {
	// After Main every server has been stopped, so no goroutine waiting on a
	// server process may remain.
	os.Exit(testenv.MainLeakCheck(m))
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.WithoutCancel(ctx)) })
	return conn
}

func currentDatabase(t *testing.T, ctx context.Context, conn *pgx.Conn) string {
	t.Helper()
	var name string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatalf("current_database: %v", err)
	}
	return name
}

func TestPostgresGivesSeparateWorkingDatabases(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)

	urlA := testenv.Postgres(t)
	urlB := testenv.Postgres(t)
	if urlA == urlB {
		t.Fatalf("two calls returned the same URL %s", urlA)
	}
	a := connect(t, ctx, urlA)
	b := connect(t, ctx, urlB)
	nameA, nameB := currentDatabase(t, ctx, a), currentDatabase(t, ctx, b)
	if nameA == nameB || !strings.HasPrefix(nameA, "t_") || !strings.HasPrefix(nameB, "t_") {
		t.Fatalf("databases %q and %q: want two different t_* databases", nameA, nameB)
	}

	// A table in one database is invisible in the other.
	if _, err := a.Exec(ctx, "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	var n int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil {
		t.Fatalf("count tables: %v", err)
	}
	if n != 0 {
		t.Fatalf("table created in %s is visible in %s", nameA, nameB)
	}

	var version int
	if err := a.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatalf("server version: %v", err)
	}
	if version < 150000 {
		t.Fatalf("server version %d, want PostgreSQL 15 or newer", version)
	}
}

func TestPostgresDropsDatabaseInCleanup(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)

	var name string
	t.Run("user", func(t *testing.T) {
		conn := connect(t, ctx, testenv.Postgres(t))
		name = currentDatabase(t, ctx, conn)
		// The connection stays open on purpose: the drop must force it out.
	})
	admin := connect(t, ctx, testenv.Postgres(t))
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatalf("look up database: %v", err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

func TestPostgresServerRestartKeepsData(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)

	srv := testenv.StartPostgres(t)
	dbURL := srv.CreateDatabase(t)
	port := srv.Port()

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives')"); err != nil {
		t.Fatalf("write: %v", err)
	}

	srv.Restart(t)

	// The old session was cut by the restart.
	if err := conn.Ping(ctx); err == nil {
		t.Fatalf("connection opened before Restart still works; the server was not restarted")
	}
	_ = conn.Close(ctx)

	if srv.Port() != port {
		t.Fatalf("port changed from %d to %d", port, srv.Port())
	}
	after := connect(t, ctx, dbURL)
	var v string
	if err := after.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil {
		t.Fatalf("read after restart: %v", err)
	}
	if v != "survives" {
		t.Fatalf("read %q after restart, want %q", v, "survives")
	}
}

func TestPostgresServerStopRefusesConnections(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)

	srv := testenv.StartPostgres(t)
	srv.Stop(t)
	shortCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(shortCtx, srv.URL()); err == nil {
		_ = conn.Close(ctx)
		t.Fatalf("connect to stopped server succeeded")
	}
	srv.Start(t)
	connect(t, ctx, srv.URL())
}

func TestRedisWorks(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)

	addrA, addrB := testenv.Redis(t), testenv.Redis(t)
	a := redis.NewClient(&redis.Options{Addr: addrA})
	t.Cleanup(func() { _ = a.Close() })
	b := redis.NewClient(&redis.Options{Addr: addrB})
	t.Cleanup(func() { _ = b.Close() })

	if err := a.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	got, err := a.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("get = %q, %v; want %q", got, err, "v")
	}
	if n, err := b.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("second server: exists = %d, %v; want 0 (servers must be separate)", n, err)
	}
}

func TestRedisURLParses(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)

	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatalf("parse RedisURL: %v", err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func TestRedisServerRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		appendOnly bool
		wantKept   bool
	}{
		{name: "appendonly keeps data", appendOnly: true, wantKept: true},
		{name: "no persistence loses data", appendOnly: false, wantKept: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)

			srv := testenv.StartRedis(t, testenv.RedisOptions{AppendOnly: tt.appendOnly})
			if want := "redis://" + srv.Addr(); srv.URL() != want {
				t.Fatalf("URL() = %q, want %q", srv.URL(), want)
			}
			c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatalf("set: %v", err)
			}

			srv.Restart(t)

			n, err := c.Exists(ctx, "k").Result()
			if err != nil {
				t.Fatalf("exists after restart: %v", err)
			}
			if kept := n == 1; kept != tt.wantKept {
				t.Fatalf("key kept after restart = %v, want %v", kept, tt.wantKept)
			}
		})
	}
}

func TestRedisServerStop(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)

	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	srv.Stop(t)
	// A plain dial: a go-redis client would keep a retry goroutine around.
	if conn, err := net.DialTimeout("tcp", srv.Addr(), time.Second); err == nil {
		_ = conn.Close()
		t.Fatalf("stopped server at %s accepts connections", srv.Addr())
	}
	srv.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping after Start: %v", err)
	}
}

func TestBuildBinary(t *testing.T) {
	t.Parallel()

	const pkg = "github.com/invoicing/tenantworker/internal/testenv/testdata/hello"
	bin := testenv.BuildBinary(t, pkg)
	if again := testenv.BuildBinary(t, pkg); again != bin {
		t.Fatalf("second BuildBinary = %s, want cached %s", again, bin)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run %s: %v", bin, err)
	}
	if got := strings.TrimSpace(string(out)); got != "hello from built binary" {
		t.Fatalf("output %q", got)
	}
}

func TestPostgresManyParallelDatabases(t *testing.T) {
	t.Parallel()
	for i := range 24 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			conn := connect(t, ctx, testenv.Postgres(t))
			if _, err := conn.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY)"); err != nil {
				t.Fatalf("create table: %v", err)
			}
		})
	}
}

// BenchmarkPostgres measures creating a database; the drops run after the
// benchmark. Run with a bounded count, e.g. -benchtime=50x.
func BenchmarkPostgres(b *testing.B) {
	testenv.Postgres(b) // start the shared server outside the measurement
	for b.Loop() {
		testenv.Postgres(b)
	}
}

// BenchmarkRedis measures starting a dedicated redis-server; they all run
// until the benchmark ends. Run with a bounded count, e.g. -benchtime=50x.
func BenchmarkRedis(b *testing.B) {
	for b.Loop() {
		testenv.Redis(b)
	}
}
