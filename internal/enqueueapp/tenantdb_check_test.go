package enqueueapp_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// openWithTenantDatabases opens a Backend as the binaries do, with
// DATABASE_URL a non-superuser owner's database and TENANT_DATABASES
// tenantDatabases, logging into the returned buffer.
func openWithTenantDatabases(t *testing.T, tenantDatabases string) (*backend.Backend, *syncBuffer, error) {
	t.Helper()
	e := env(t)
	e["DATABASE_URL"] = testenv.PostgresAs(t, true)
	e["TENANT_DATABASES"] = tenantDatabases
	cfg, err := config.FromEnv(getenv(e))
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	b, err := backend.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(&log, nil)), backend.Options{})
	if err == nil {
		t.Cleanup(func() { _ = b.Close() })
	}
	return b, &log, err
}

// TestStartRefusesATenantDatabaseItCannotCreateSchemasIn: a
// TENANT_DATABASES URL whose role may not create schemas in its database
// is found at start, as "db add" finds it (placement.CheckDatabase), and
// stops the binary with an error naming the variable, the database and
// the grant, instead of leaving the first tenant placed there
// "provisioning" with "permission denied for database".
func TestStartRefusesATenantDatabaseItCannotCreateSchemasIn(t *testing.T) {
	t.Parallel()
	noCreate := testenv.PostgresAs(t, false)
	owner := testenv.PostgresAs(t, true)
	_, _, err := openWithTenantDatabases(t, "eu2="+noCreate+",us1="+owner)
	if err == nil {
		t.Fatal("start with a TENANT_DATABASES role that may not create schemas succeeded")
	}
	for _, want := range []string{"TENANT_DATABASES", "eu2", "may not create schemas", "GRANT CREATE ON DATABASE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "us1") {
		t.Errorf("error %q names us1, whose role may create schemas", err)
	}
	t.Logf("error: %v", err)
}

// TestStartServesWhenATenantDatabaseIsDown: a TENANT_DATABASES database
// that cannot be reached at start does not stop the binary (its tenants
// wait, the others are served, as before); the start logs a warning naming
// it and saying its privileges were not checked. A database whose role
// may create schemas starts without a warning.
func TestStartServesWhenATenantDatabaseIsDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "postgres://app:s3cret@" + l.Addr().String() + "/invoicing?sslmode=disable&connect_timeout=5"
	_ = l.Close()
	owner := testenv.PostgresAs(t, true)
	_, log, err := openWithTenantDatabases(t, "down="+down+",us1="+owner)
	if err != nil {
		t.Fatalf("start with a tenant database down: %v", err)
	}
	out := log.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "database=down") || !strings.Contains(out, "not checked") {
		t.Fatalf("log lacks a warning naming the database that is down:\n%s", out)
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("log quotes the password:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "database=us1") {
			t.Errorf("log warns about us1: %s", line)
		}
	}
}
