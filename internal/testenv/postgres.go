package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

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
	base, err := makeTempDir(tempRoot(), "postgres")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), postgresStartTimeout)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Options{Dir: base, MaxConnections: postgresMaxConnections})
	if err != nil {
		return nil, err
	}
	s := &PostgresServer{srv: srv, base: base}
	registerServer(s)
	return s, nil
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
