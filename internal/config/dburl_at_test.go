package config

import (
	"strings"
	"testing"
)

// TestDatabaseURLWithAnUnencodedAtIsRefused: pgx splits a URL's
// authority at its first '@', so a password holding one
// (postgres://app:s3cr@tPW@db/inv) parsed as password "s3cr" and host
// "tPW@db": the start failed with "lookup tPW@db: no such host",
// quoting the rest of the password on stderr and in the log collectors.
// Such a URL is refused before any connection, naming the variable and
// the fix (%40), quoting no part of the password, in DATABASE_URL,
// MIGRATIONS_DATABASE_URL and TENANT_DATABASES alike; a Unix socket
// directory (an absolute path) may hold an '@'.
func TestDatabaseURLWithAnUnencodedAtIsRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, value string }{
		{"DATABASE_URL", "postgres://app:s3cr@tPW@db.internal/inv"},
		{"DATABASE_URL", "postgres://app:s3cr@tPW@db1:5432,db2:5432/inv"},
		{"MIGRATIONS_DATABASE_URL", "postgresql://owner:s3cr@tPW@db.internal:5432/inv?sslmode=require"},
		{"TENANT_DATABASES", "eu2=postgres://app:s3cr@tPW@db2.internal/inv"},
	} {
		m := map[string]string{"DATABASE_URL": "postgres://db/inv"}
		m[c.name] = c.value
		_, err := FromEnv(env(m))
		if err == nil {
			t.Errorf("%s=%s: accepted", c.name, c.value)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.name+": ") || !strings.Contains(msg, "%40") {
			t.Errorf("%s: error %q, want it to name the variable and say to percent-encode '@' as %%40", c.name, msg)
		}
		if strings.Contains(msg, "tPW") || strings.Contains(msg, "s3cr") {
			t.Errorf("%s: the error quotes part of the password: %q", c.name, msg)
		}
	}
	for _, ok := range []string{
		"postgres://app:s3cr%40tPW@db.internal/inv",
		"host=db.internal user=app password=s3cr@tPW dbname=inv",
		"postgres://app@/inv?host=/run/pg@15",
	} {
		if _, err := FromEnv(env(map[string]string{"DATABASE_URL": ok})); err != nil {
			t.Errorf("DATABASE_URL=%s: %v", ok, err)
		}
	}
}
