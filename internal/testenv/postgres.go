package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgresStartTimeout bounds how long a PostgreSQL server may take to
// accept connections.
const postgresStartTimeout = 30 * time.Second

// pgInstallHint is appended to every "no PostgreSQL" failure.
const pgInstallHint = "install Debian package postgresql (apt-get install postgresql)"

// postgresBinaries are the PostgreSQL programs this package runs.
type postgresBinaries struct {
	initdb   string
	postgres string
}

// findPostgres finds initdb and postgres on PATH or in the newest
// /usr/lib/postgresql/*/bin.
func findPostgres() (postgresBinaries, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) < pgMajor(dirs[j]) })
	initdb, ok1 := findBinary("initdb", dirs...)
	postgres, ok2 := findBinary("postgres", dirs...)
	if !ok1 || !ok2 {
		return postgresBinaries{}, fmt.Errorf("find PostgreSQL binaries initdb and postgres (on PATH or in /usr/lib/postgresql/*/bin): not found; %s", pgInstallHint)
	}
	return postgresBinaries{initdb: initdb, postgres: postgres}, nil
}

// pgMajor extracts the major version from /usr/lib/postgresql/<major>/bin.
func pgMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// PostgresServer is a throwaway PostgreSQL server on 127.0.0.1 with its own
// data directory, trust authentication and superuser "postgres". Stop, Start
// and Restart keep the port and the data directory, so data survives them.
type PostgresServer struct {
	bin     postgresBinaries
	user    *serviceUser
	base    string // temp dir holding data/ and postgres.log
	dataDir string
	logPath string

	mu   sync.Mutex
	port int
	proc *process // nil while stopped
}

// StartPostgres starts a dedicated PostgreSQL server for this test (not the
// shared one), for fault tests that stop or restart it. It is stopped and
// its data removed in t.Cleanup.
func StartPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	s, err := newPostgresServer()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		unregisterServer(s)
		if err := s.shutdown(); err != nil {
			t.Errorf("testenv: %v", err)
		}
		if err := os.RemoveAll(s.base); err != nil {
			t.Errorf("testenv: remove %s: %v", s.base, err)
		}
	})
	return s
}

// newPostgresServer initializes a data directory and starts a server on a
// free port; the server is registered for Main to stop.
func newPostgresServer() (*PostgresServer, error) {
	bin, err := findPostgres()
	if err != nil {
		return nil, err
	}
	usr, err := lookupServiceUser("postgres")
	if err != nil {
		return nil, err
	}
	base, err := makeTempDir(tempRoot(), "postgres")
	if err != nil {
		return nil, err
	}
	s := &PostgresServer{
		bin:     bin,
		user:    usr,
		base:    base,
		dataDir: filepath.Join(base, "data"),
		logPath: filepath.Join(base, "postgres.log"),
	}
	if err := s.initdb(); err != nil {
		return nil, err
	}
	registerServer(s)
	if err := s.startNewPort(); err != nil {
		return nil, err
	}
	return s, nil
}

// initdb creates the data directory, owned by the service user.
func (s *PostgresServer) initdb() error {
	if err := os.Mkdir(s.dataDir, 0o700); err != nil {
		return fmt.Errorf("create postgres data dir: %w", err)
	}
	if err := s.user.chown(s.dataDir); err != nil {
		return err
	}
	cmd := exec.Command(s.bin.initdb,
		"-D", s.dataDir, "-A", "trust", "-U", "postgres",
		"--no-sync", "-E", "UTF8", "--locale=C", "--no-instructions")
	cmd.Dir = s.base
	cmd.SysProcAttr = sysProcAttr(s.user.credential())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", s.dataDir, err, out)
	}
	return nil
}

// startNewPort starts the server on a fresh free port, retrying once with
// another port when the first one was taken in the meantime.
func (s *PostgresServer) startNewPort() error {
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

// errAddressInUse marks a start that failed because the port was taken.
var errAddressInUse = errors.New("address already in use")

// startLocked starts postgres on s.port and waits until it accepts
// connections. s.mu must be held.
func (s *PostgresServer) startLocked() error {
	if s.proc != nil {
		return nil
	}
	logStart, _ := os.Stat(s.logPath)
	args := []string{
		"-D", s.dataDir,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=128MB",
		// Dynamic shared memory in the data directory rather than in
		// /dev/shm/PostgreSQL.*, so that a killed server leaves nothing
		// behind once its directory is removed.
		"-c", "dynamic_shared_memory_type=mmap",
	}
	proc, err := startProcess(s.bin.postgres, args, s.base, s.logPath, s.user.credential(), syscall.SIGINT)
	if err != nil {
		return err
	}
	if err := waitPostgres(proc, s.URL()); err != nil {
		proc.kill()
		log := readLogSince(s.logPath, logStart)
		if strings.Contains(log, "already in use") {
			err = fmt.Errorf("%w: %w", errAddressInUse, err)
		}
		return fmt.Errorf("start postgres on port %d: %w\nserver log:\n%s", s.port, err, log)
	}
	s.proc = proc
	return nil
}

// waitPostgres polls until the server accepts connections, exits, or
// postgresStartTimeout passes.
func waitPostgres(proc *process, connURL string) error {
	deadline := time.Now().Add(postgresStartTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		if proc.exited() {
			return fmt.Errorf("server exited: %v", proc.waitErr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, connURL)
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not accepting connections after %s: %w", postgresStartTimeout, lastErr)
}

// Port returns the TCP port the server listens on (on 127.0.0.1).
func (s *PostgresServer) Port() int {
	return s.portUnlocked()
}

// URL returns the superuser URL of the server's "postgres" database.
func (s *PostgresServer) URL() string {
	return s.DatabaseURL("postgres")
}

// DatabaseURL returns the superuser URL of database name on this server.
func (s *PostgresServer) DatabaseURL(name string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     fmt.Sprintf("127.0.0.1:%d", s.portUnlocked()),
		Path:     "/" + name,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// portUnlocked reads the port without s.mu; the port only changes inside
// startNewPort, before the server is handed out.
func (s *PostgresServer) portUnlocked() int { return s.port }

// CreateDatabase creates a fresh, empty database on this server and returns
// its URL; it is dropped (WITH (FORCE)) in t.Cleanup.
func (s *PostgresServer) CreateDatabase(t testing.TB) string {
	t.Helper()
	return createTestDatabase(t, s.URL(), s.DatabaseURL)
}

// Stop stops the server (fast shutdown: open sessions are disconnected) and
// waits for it to exit. Stopping a stopped server does nothing.
func (s *PostgresServer) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// Start starts a stopped server again on the same port and data directory
// and waits until it accepts connections. Starting a running server does
// nothing.
func (s *PostgresServer) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startLocked(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// Restart stops and starts the server; data survives.
func (s *PostgresServer) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.Start(t)
}

func (s *PostgresServer) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	err := s.proc.stop()
	s.proc = nil
	if err != nil {
		return fmt.Errorf("stop postgres on port %d: %w", s.port, err)
	}
	return nil
}

// shutdown stops the server for good (Main and t.Cleanup).
func (s *PostgresServer) shutdown() error { return s.stop() }
