package pgserver

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/childproc"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tempRoot returns a directory the postgres user can reach when the test
// runs as root (t.TempDir() is mode 0700).
func tempRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgserver-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func startServer(t *testing.T, ctx context.Context, opts Options) *Server {
	t.Helper()
	srv, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return srv
}

func queryString(t *testing.T, ctx context.Context, url, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func refuses(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		_ = conn.Close(ctx)
		return false
	}
	return true
}

func TestStartCreateDatabaseStopRemovesDir(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	root := tempRoot(t)

	srv, err := Start(ctx, Options{TempRoot: root})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if filepath.Dir(srv.Dir()) != root {
		t.Fatalf("Dir() = %s, want a directory in %s", srv.Dir(), root)
	}
	if _, ok := ownerPID(filepath.Base(srv.Dir())); !ok {
		t.Fatalf("Dir() = %s is not named like pgserver-<pid>-*", srv.Dir())
	}
	if got := queryString(t, ctx, srv.URL(), "SELECT current_setting('fsync')"); got != "off" {
		t.Fatalf("fsync = %s, want off with Options.Fsync false", got)
	}
	if got := queryString(t, ctx, srv.URL(), "SELECT current_setting('port')"); got != strconv.Itoa(srv.Port()) {
		t.Fatalf("server port %s, Port() %d", got, srv.Port())
	}

	dbURL, err := srv.CreateDatabase(ctx, "app-db")
	if err != nil {
		t.Fatalf("CreateDatabase: %v", err)
	}
	if dbURL != srv.DatabaseURL("app-db") {
		t.Fatalf("CreateDatabase URL %s, DatabaseURL %s", dbURL, srv.DatabaseURL("app-db"))
	}
	if got := queryString(t, ctx, dbURL, "SELECT current_database() || ' ' || pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"); got != "app-db UTF8" {
		t.Fatalf("database = %q, want %q", got, "app-db UTF8")
	}
	if _, err := srv.CreateDatabase(ctx, "app-db"); err == nil {
		t.Fatalf("second CreateDatabase of the same name succeeded")
	}

	if err := srv.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(srv.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory %s after Stop: %v, want it removed", srv.Dir(), err)
	}
	if !refuses(ctx, srv.URL()) {
		t.Fatalf("server accepts connections after Stop")
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := srv.StartProcess(ctx); err == nil {
		t.Fatalf("StartProcess after Stop removed the directory: no error")
	}
}

func TestRestartKeepsPortAndData(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := startServer(t, ctx, Options{TempRoot: tempRoot(t)})
	port := srv.Port()

	conn, err := pgx.Connect(ctx, srv.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('Łódź')"); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatalf("a session opened before Restart still works: the server was not restarted")
	}
	_ = conn.Close(ctx)
	if srv.Port() != port {
		t.Fatalf("port changed from %d to %d", port, srv.Port())
	}
	if got := queryString(t, ctx, srv.URL(), "SELECT v FROM kept"); got != "Łódź" {
		t.Fatalf("after restart read %q, want %q", got, "Łódź")
	}
}

func TestStopProcessThenStartProcess(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := startServer(t, ctx, Options{TempRoot: tempRoot(t)})

	if err := srv.StopProcess(ctx); err != nil {
		t.Fatalf("StopProcess: %v", err)
	}
	if !refuses(ctx, srv.URL()) {
		t.Fatalf("server accepts connections after StopProcess")
	}
	if _, err := os.Stat(filepath.Join(srv.Dir(), "data", "PG_VERSION")); err != nil {
		t.Fatalf("data directory after StopProcess: %v", err)
	}
	if err := srv.StartProcess(ctx); err != nil {
		t.Fatalf("StartProcess: %v", err)
	}
	queryString(t, ctx, srv.URL(), "SELECT 'up'")
}

func TestGivenDirIsKeptAndReused(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := filepath.Join(tempRoot(t), "pg")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	first, err := Start(ctx, Options{Dir: dir, Fsync: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := queryString(t, ctx, first.URL(), "SELECT current_setting('fsync')"); got != "on" {
		_ = first.Stop(ctx)
		t.Fatalf("fsync = %s, want on with Options.Fsync true", got)
	}
	if _, err := first.CreateDatabase(ctx, "survivor"); err != nil {
		_ = first.Stop(ctx)
		t.Fatalf("CreateDatabase: %v", err)
	}
	if err := first.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Fatalf("a directory Start did not create was removed or emptied by Stop: %v", err)
	}

	second := startServer(t, ctx, Options{Dir: dir})
	if got := queryString(t, ctx, second.DatabaseURL("survivor"), "SELECT current_database()"); got != "survivor" {
		t.Fatalf("reused data directory: database %q", got)
	}
}

func TestStartOnTakenPortFails(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	root := tempRoot(t)

	srv, err := Start(ctx, Options{TempRoot: root, Port: port})
	if err == nil {
		_ = srv.Stop(ctx)
		t.Fatalf("Start on taken port %d succeeded", port)
	}
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("Start on taken port: %v, want ErrPortInUse", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("failed Start left %d entries in %s", len(entries), root)
	}
}

func TestStartOnPortOfAnotherPostgresFails(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	root := tempRoot(t)
	other := startServer(t, ctx, Options{TempRoot: root})

	srv, err := Start(ctx, Options{TempRoot: root, Port: other.Port()})
	if err == nil {
		_ = srv.Stop(ctx)
		t.Fatalf("Start on the port of another postgres succeeded")
	}
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("Start on the port of another postgres: %v, want ErrPortInUse", err)
	}
}

func TestStopWithEndedContextKills(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv, err := Start(ctx, Options{TempRoot: tempRoot(t)})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	// A stop with time to spare is a clean shutdown, and the server's log
	// says so; one with an ended context kills the server at once, and the
	// log has no such line (no timing: a loaded machine is slow either way).
	const cleanShutdown = "database system is shut down"
	logSince := func(before os.FileInfo) string { return childproc.ReadLogSince(srv.LogPath(), before) }
	if err := srv.StopProcess(ctx); err != nil {
		t.Fatalf("StopProcess: %v", err)
	}
	if log := logSince(nil); !strings.Contains(log, cleanShutdown) {
		t.Fatalf("log after a stop with a live context has no %q:\n%s", cleanShutdown, log)
	}
	if err := srv.StartProcess(ctx); err != nil {
		t.Fatalf("StartProcess: %v", err)
	}
	before, err := os.Stat(srv.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := srv.StopProcess(ended); err != nil {
		t.Fatalf("StopProcess with an ended context: %v", err)
	}
	if log := logSince(before); strings.Contains(log, cleanShutdown) {
		t.Fatalf("a stop with an ended context shut the server down cleanly, want it killed:\n%s", log)
	}
	if err := srv.Stop(ended); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(srv.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory after Stop: %v, want removed", err)
	}
}

func TestStartWithEndedContextLeavesNothing(t *testing.T) {
	t.Parallel()
	root := tempRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	srv, err := Start(ctx, Options{TempRoot: root})
	if err == nil {
		_ = srv.Stop(context.Background())
		t.Fatalf("Start with an ended context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with an ended context: %v, want it to wrap context.Canceled", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("failed Start left %d entries in %s", len(entries), root)
	}
}

func TestUnreachableDirAsRoot(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	private := filepath.Join(tempRoot(t), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	srv, err := Start(ctx, Options{TempRoot: private})
	if os.Geteuid() != 0 {
		// Not root: the server runs as the owner of the directory.
		if err != nil {
			t.Fatalf("Start in own 0700 directory as non-root: %v", err)
		}
		_ = srv.Stop(ctx)
		return
	}
	if err == nil {
		_ = srv.Stop(ctx)
		t.Fatalf("Start as root under a 0700 root-owned directory succeeded")
	}
	if !errors.Is(err, ErrDirUnreachable) {
		t.Fatalf("Start as root under a 0700 directory: %v, want ErrDirUnreachable", err)
	}
	if entries, _ := os.ReadDir(private); len(entries) != 0 {
		t.Fatalf("failed Start left %d entries in %s", len(entries), private)
	}
}

// TestInitLeavesADataDirectoryToCopy: Init makes data/ without starting a
// server; copies of it start as independent servers; Init refuses a
// missing Dir and a Dir that already holds a data directory.
func TestInitLeavesADataDirectoryToCopy(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	root := tempRoot(t)
	tmpl := filepath.Join(root, "template")
	if err := Init(ctx, Options{Dir: tmpl}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmpl, "data", "PG_VERSION")); err != nil {
		t.Fatalf("Init left no data directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmpl, "data", "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Init left a server running or its pid file (%v)", err)
	}
	var urls []string
	for _, name := range []string{"a", "b"} {
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", filepath.Join(tmpl, "data"), filepath.Join(dir, "data")).CombinedOutput(); err != nil {
			t.Fatalf("copy: %v\n%s", err, out)
		}
		srv := startServer(t, ctx, Options{Dir: dir})
		urls = append(urls, srv.URL())
	}
	conn, err := pgx.Connect(ctx, urls[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, ctx, urls[1], "SELECT count(*)::text FROM pg_tables WHERE tablename = 'only_in_a'"); got != "0" {
		t.Fatalf("a table created on one copy's server is on the other's (count %s)", got)
	}

	if err := Init(ctx, Options{}); err == nil {
		t.Error("Init without a directory: no error")
	}
	if err := Init(ctx, Options{Dir: tmpl}); err == nil {
		t.Error("Init into a directory that holds a data directory: no error")
	}
}
