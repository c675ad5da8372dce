package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invoicing/tenantworker/internal/pgserver"
)

// postgresStartTimeout bounds starting or restarting a PostgreSQL server.
const postgresStartTimeout = 3 * time.Minute

// postgresMaxConnections lets many parallel tests hold pools on one server.
const postgresMaxConnections = 300

// PostgresServer is a throwaway PostgreSQL server on 127.0.0.1 with its own
// data directory, trust authentication and superuser "postgres" (a
// pgserver.Server). Stop, Start and Restart keep the port and the data
// directory, so data survives them.
type PostgresServer struct {
	srv  *pgserver.Server
	base string // the testenv directory holding the server's files
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

// newPostgresServer starts a server in a new testenv-postgres-<pid>-*
// directory (removed by Main, swept by later test binaries if this one
// dies) on a free port; the server is registered for Main to stop.
func newPostgresServer() (*PostgresServer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), postgresStartTimeout)
	defer cancel()
	tmpl, err := postgresTemplate(ctx)
	if err != nil {
		return nil, err
	}
	base, err := makeTempDir(tempRoot(), "postgres")
	if err != nil {
		return nil, err
	}
	// A copy of the template's data directory is what initdb would have
	// made (the template never ran a server): Start uses it as is.
	if out, err := exec.CommandContext(ctx, "cp", "-a", tmpl, filepath.Join(base, "data")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy postgres data directory %s: %w\n%s", tmpl, err, out)
	}
	srv, err := pgserver.Start(ctx, pgserver.Options{Dir: base, MaxConnections: postgresMaxConnections})
	if err != nil {
		return nil, err
	}
	s := &PostgresServer{srv: srv, base: base}
	registerServer(s)
	return s, nil
}

// pgTemplate is the data directory every server of this test binary
// starts from: initdb runs once (seconds on a busy machine), a copy takes
// a fraction of that.
var pgTemplate struct {
	once sync.Once
	dir  string
	err  error
}

// postgresTemplate returns the initialized data directory that new servers
// copy, running initdb the first time (into a testenv-pgtemplate-<pid>-*
// directory that Main removes).
func postgresTemplate(ctx context.Context) (string, error) {
	pgTemplate.once.Do(func() {
		base, err := makeTempDir(tempRoot(), "pgtemplate")
		if err != nil {
			pgTemplate.err = err
			return
		}
		if err := pgserver.Init(ctx, pgserver.Options{Dir: base}); err != nil {
			pgTemplate.err = err
			return
		}
		pgTemplate.dir = filepath.Join(base, "data")
	})
	return pgTemplate.dir, pgTemplate.err
}

// Port returns the TCP port the server listens on (on 127.0.0.1).
func (s *PostgresServer) Port() int { return s.srv.Port() }

// URL returns the superuser URL of the server's "postgres" database.
func (s *PostgresServer) URL() string { return s.srv.URL() }

// DatabaseURL returns the superuser URL of database name on this server.
func (s *PostgresServer) DatabaseURL(name string) string { return s.srv.DatabaseURL(name) }

// CreateDatabase creates a fresh, empty database on this server and returns
// its URL; it is dropped (WITH (FORCE)) in t.Cleanup.
func (s *PostgresServer) CreateDatabase(t testing.TB) string {
	t.Helper()
	return createTestDatabase(t, s.URL(), s.DatabaseURL)
}

// RequirePasswords makes the server ask every login but the superuser
// "postgres" for its password (scram-sha-256, as a production server
// does), instead of trusting it: a role of DatabaseAs given a wrong
// password is refused with SQLSTATE 28P01. It rewrites pg_hba.conf and
// reloads the configuration; it holds across Stop and Start.
func (s *PostgresServer) RequirePasswords(t testing.TB) {
	t.Helper()
	hba := filepath.Join(s.srv.Dir(), "data", "pg_hba.conf")
	// The file exists (initdb wrote it), so it keeps its owner and mode.
	if err := os.WriteFile(hba, []byte("host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := adminExec(s.URL(), "SELECT pg_catalog.pg_reload_conf()"); err != nil {
		t.Fatalf("testenv: reload %s: %v", hba, err)
	}
	// The postmaster reloads on its own time: wait until a login of an
	// unknown role is asked for a password (28P01) rather than trusted and
	// told the role does not exist (28000).
	probe, err := url.Parse(s.URL())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	probe.User = url.UserPassword("testenv_no_such_role", "x")
	WaitFor(t, 30*time.Second, "pg_hba.conf reloaded", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, probe.String())
		if err == nil {
			_ = conn.Close(ctx)
			return false
		}
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "28P01"
	})
}

// Stop stops the server (fast shutdown: open sessions are disconnected) and
// waits for it to exit. Stopping a stopped server does nothing.
func (s *PostgresServer) Stop(t testing.TB) {
	t.Helper()
	if err := s.shutdown(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// Start starts a stopped server again on the same port and data directory
// and waits until it accepts connections. Starting a running server does
// nothing.
func (s *PostgresServer) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), postgresStartTimeout)
	defer cancel()
	if err := s.srv.StartProcess(ctx); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// Restart stops and starts the server; data survives.
func (s *PostgresServer) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.Start(t)
}

// shutdown stops the server process (Stop, t.Cleanup and Main); its
// directory is removed by Main with the other testenv directories.
func (s *PostgresServer) shutdown() error {
	if err := s.srv.StopProcess(context.Background()); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// Freeze stops the server's postmaster and every backend it started with
// SIGSTOP, as a paused VM or a server stalled on a dead disk does: it keeps
// its connections and its port, accepts new TCP connections into its
// listen queue and answers nothing, until the returned function, also run
// at the end of the test, resumes them all (SIGCONT).
func (s *PostgresServer) Freeze(t testing.TB) (thaw func()) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.srv.Dir(), "data", "postmaster.pid"))
	if err != nil {
		t.Fatalf("testenv: postmaster pid: %v", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	postmaster, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || postmaster <= 0 {
		t.Fatalf("testenv: postmaster.pid starts with %q", first)
	}
	pids := append([]int{postmaster}, childPids(postmaster)...)
	var thawed atomic.Bool
	thaw = func() {
		if thawed.CompareAndSwap(false, true) {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
	}
	t.Cleanup(thaw)
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil && pid == postmaster {
			t.Fatalf("testenv: stop postmaster %d: %v", pid, err)
		}
	}
	return thaw
}

// childPids lists the processes whose parent is pid, from /proc.
func childPids(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}
