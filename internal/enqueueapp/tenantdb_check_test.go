package enqueueapp_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/url"
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

// TestStartRefusesATenantDatabaseThatRefusesTheLogin: a TENANT_DATABASES
// URL whose server answers that the login is refused (SQLSTATE class 28: a
// wrong password, 28P01; a role that does not exist, 28000) is a
// misconfiguration, not an outage: it stops the start with an error naming
// the variable and the database, and never the password.
func TestStartRefusesATenantDatabaseThatRefusesTheLogin(t *testing.T) {
	t.Parallel()
	srv := testenv.StartPostgres(t)
	srv.RequirePasswords(t)
	wrong, err := url.Parse(srv.DatabaseAs(t, true))
	if err != nil {
		t.Fatal(err)
	}
	wrong.User = url.UserPassword(wrong.User.Username(), "n0t-the-s3cret")
	noRole, err := url.Parse(testenv.PostgresAs(t, true))
	if err != nil {
		t.Fatal(err)
	}
	noRole.User = url.UserPassword("no_such_role_here", "an0ther-s3cret")
	owner := testenv.PostgresAs(t, true)
	for _, c := range []struct{ name, url, code string }{
		{"eu2", wrong.String(), "28P01"},
		{"eu3", noRole.String(), "28000"},
	} {
		_, log, err := openWithTenantDatabases(t, c.name+"="+c.url+",us1="+owner)
		if err == nil {
			t.Errorf("start with %s refusing the login (%s) succeeded; log:\n%s", c.name, c.code, log)
			continue
		}
		for _, want := range []string{"TENANT_DATABASES", "database " + c.name, c.code} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "us1") {
			t.Errorf("error %q quotes a password or names us1", err)
		}
		t.Logf("error: %v", err)
	}
}

// TestStartRefusesATenantDatabaseThatDoesNotExist: a TENANT_DATABASES URL
// naming a database its server does not have (SQLSTATE 3D000) stops the
// start with an error naming the variable and the database.
func TestStartRefusesATenantDatabaseThatDoesNotExist(t *testing.T) {
	t.Parallel()
	missing, err := url.Parse(testenv.PostgresAs(t, true))
	if err != nil {
		t.Fatal(err)
	}
	missing.Path = "/no_such_database_here"
	_, log, err := openWithTenantDatabases(t, "eu2="+missing.String())
	if err == nil {
		t.Fatalf("start with a TENANT_DATABASES database that does not exist succeeded; log:\n%s", log)
	}
	for _, want := range []string{"TENANT_DATABASES", "database eu2", "3D000"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if pw, _ := missing.User.Password(); strings.Contains(err.Error(), pw) {
		t.Errorf("error %q quotes the password", err)
	}
	t.Logf("error: %v", err)
}

// TestStartRefusesATenantDatabaseThatRefusesTLS: a TENANT_DATABASES URL
// whose server answers but refuses its TLS setting (sslmode=require
// against a server without TLS, as the test servers are) is a
// misconfiguration, not an outage: it stops the start, naming the
// variable, the database and the TLS refusal, never the password, as a
// refused login does. Before, it was a warning and the binary started.
func TestStartRefusesATenantDatabaseThatRefusesTLS(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testenv.PostgresAs(t, true))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("sslmode", "require")
	u.RawQuery = q.Encode()
	owner := testenv.PostgresAs(t, true)
	_, log, err := openWithTenantDatabases(t, "eu2="+u.String()+",us1="+owner)
	if err == nil {
		t.Fatalf("start with a TENANT_DATABASES database refusing sslmode=require succeeded; log:\n%s", log)
	}
	for _, want := range []string{"TENANT_DATABASES", "database eu2", "TLS", "server refused TLS connection"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if pw, ok := u.User.Password(); ok && pw != "" && strings.Contains(err.Error(), pw) {
		t.Errorf("error %q quotes the password", err)
	}
	if strings.Contains(err.Error(), "us1") {
		t.Errorf("error %q names us1", err)
	}
	t.Logf("error: %v", err)
}

// TestStartRefusesATenantDatabaseThatIsNotUTF8: a TENANT_DATABASES
// database whose server encoding is not UTF8 stops the start, naming the
// variable, the database and its encoding, as DATABASE_URL's does. Before,
// the binaries started and placed tenants there, and on LATIN1 the first
// invoice line or customer outside Latin-1 the worker copied there (a
// move) or the app wrote failed with 22P05.
func TestStartRefusesATenantDatabaseThatIsNotUTF8(t *testing.T) {
	t.Parallel()
	latin1 := testenv.PostgresEncoded(t, "LATIN1")
	owner := testenv.PostgresAs(t, true)
	_, log, err := openWithTenantDatabases(t, "eu2="+latin1+",us1="+owner)
	if err == nil {
		t.Fatalf("start with a LATIN1 TENANT_DATABASES database succeeded; log:\n%s", log)
	}
	for _, want := range []string{"TENANT_DATABASES", "database eu2", "LATIN1", "UTF8"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "us1") {
		t.Errorf("error %q names us1, which is UTF8", err)
	}
	t.Logf("error: %v", err)
}
