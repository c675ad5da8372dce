package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// adminTimeout bounds CREATE DATABASE and DROP DATABASE.
const adminTimeout = 30 * time.Second

// shared is the PostgreSQL server that Postgres hands databases out on: a
// server this binary starts on first use, or TEST_DATABASE_URL's server.
var shared struct {
	once     sync.Once
	adminURL string                   // superuser URL used for CREATE/DROP DATABASE
	dbURL    func(name string) string // URL of database name
	err      error                    // why the shared server is unusable
}

// Postgres returns the URL of a fresh, empty database (own database per
// call) on one shared throwaway PostgreSQL server per test binary, started on
// first use on 127.0.0.1 with a free port; or on TEST_DATABASE_URL's server
// when that is set. The URL is for a superuser. The database is dropped in
// t.Cleanup. When no server can be started, every test that asks fails with
// the reason.
func Postgres(t testing.TB) string {
	t.Helper()
	shared.once.Do(initShared)
	if shared.err != nil {
		t.Fatalf("testenv: shared PostgreSQL server: %v", shared.err)
	}
	return createTestDatabase(t, shared.adminURL, shared.dbURL)
}

// PostgresEncoded is Postgres with a database whose server encoding is
// encoding ("SQL_ASCII", "LATIN1", ...; collation and character type "C",
// which every encoding takes), as an operator's CREATE DATABASE ...
// ENCODING or initdb -E makes one.
func PostgresEncoded(t testing.TB, encoding string) string {
	t.Helper()
	shared.once.Do(initShared)
	if shared.err != nil {
		t.Fatalf("testenv: shared PostgreSQL server: %v", shared.err)
	}
	return createDatabase(t, shared.adminURL, shared.dbURL,
		" ENCODING "+quoteLiteral(encoding)+" LC_COLLATE 'C' LC_CTYPE 'C'")
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// initShared sets up the shared server once per test binary.
func initShared() {
	if raw := os.Getenv("TEST_DATABASE_URL"); raw != "" {
		u, err := url.Parse(raw)
		if err != nil {
			shared.err = fmt.Errorf("parse TEST_DATABASE_URL: %w", err)
			return
		}
		shared.adminURL = raw
		shared.dbURL = func(name string) string {
			v := *u
			v.Path = "/" + name
			v.RawPath = ""
			return v.String()
		}
		return
	}
	s, err := newPostgresServer()
	if err != nil {
		shared.err = err
		return
	}
	shared.adminURL = s.URL()
	shared.dbURL = s.DatabaseURL
}

// createTestDatabase creates database t_<random> through adminURL (from
// template0) and drops it WITH (FORCE) in t.Cleanup.
func createTestDatabase(t testing.TB, adminURL string, dbURL func(string) string) string {
	t.Helper()
	return createDatabase(t, adminURL, dbURL, "")
}

// createDatabase is createTestDatabase with options added to its CREATE
// DATABASE statement.
func createDatabase(t testing.TB, adminURL string, dbURL func(string) string, options string) string {
	t.Helper()
	name, err := randomName("t_")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := adminExec(adminURL, "CREATE DATABASE "+ident+" TEMPLATE template0"+options); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := adminExec(adminURL, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	return dbURL(name)
}

// adminExec runs one statement on a fresh connection to adminURL.
func adminExec(adminURL, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return err
	}
	return nil
}

// randomName returns prefix followed by 16 random lowercase hex digits.
func randomName(prefix string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random name: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}
