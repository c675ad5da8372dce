package testenv

import (
	"context"
	"crypto/rand"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresAs returns the URL of a fresh, empty database on the shared
// server (as Postgres does) for a fresh login role that is what an
// operator gives the binaries in production: NOSUPERUSER, NOCREATEDB,
// NOCREATEROLE, NOREPLICATION, with a password. With owner true the role
// owns the database (it may create schemas in it); with owner false it may
// only connect (and use what PUBLIC may: no CREATE on the database, none
// on its public schema). The database and then the role are dropped in
// t.Cleanup.
func PostgresAs(t testing.TB, owner bool) string {
	t.Helper()
	shared.once.Do(initShared)
	if shared.err != nil {
		t.Fatalf("testenv: shared PostgreSQL server: %v", shared.err)
	}
	return databaseAs(t, shared.adminURL, shared.dbURL, owner)
}

// DatabaseAs is PostgresAs on this server: a fresh database and a fresh
// login role with a password that owns it (owner true) or may only connect
// to it (owner false), both dropped in t.Cleanup. The server trusts every
// login unless RequirePasswords was called.
func (s *PostgresServer) DatabaseAs(t testing.TB, owner bool) string {
	t.Helper()
	return databaseAs(t, s.URL(), s.DatabaseURL, owner)
}

// databaseAs creates the role and the database of PostgresAs through
// adminURL, a superuser's URL.
func databaseAs(t testing.TB, adminURL string, dbURL func(string) string, owner bool) string {
	t.Helper()
	role, err := randomName("r_")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	password := rand.Text()
	quoted := pgx.Identifier{role}.Sanitize()
	if err := adminExec(adminURL, "CREATE ROLE "+quoted+
		" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD '"+password+"'"); err != nil {
		t.Fatalf("testenv: create role %s: %v", role, err)
	}
	// Registered before the database's: cleanups run last first, and a
	// role that owns a database cannot be dropped.
	t.Cleanup(func() {
		if err := adminExec(adminURL, "DROP ROLE IF EXISTS "+quoted); err != nil {
			t.Errorf("testenv: drop role %s: %v", role, err)
		}
	})
	u, err := url.Parse(createTestDatabase(t, adminURL, dbURL))
	if err != nil {
		t.Fatalf("testenv: parse database URL: %v", err)
	}
	if owner {
		db := pgx.Identifier{u.Path[1:]}.Sanitize()
		if err := adminExec(adminURL, "ALTER DATABASE "+db+" OWNER TO "+quoted); err != nil {
			t.Fatalf("testenv: give database %s to %s: %v", u.Path[1:], role, err)
		}
	}
	u.User = url.UserPassword(role, password)
	return u.String()
}

// roleCheckTimeout bounds IsSuperuser's query.
const roleCheckTimeout = 30 * time.Second

// IsSuperuser reports whether databaseURL logs in as a superuser, for
// tests that must prove they run without one.
func IsSuperuser(t testing.TB, databaseURL string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), roleCheckTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatalf("testenv: connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var super bool
	if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		t.Fatalf("testenv: read role: %v", err)
	}
	return super
}
