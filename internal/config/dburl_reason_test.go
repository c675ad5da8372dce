package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestDatabaseURLErrorSaysWhyAValidURLFails: a DATABASE_URL (or
// MIGRATIONS_DATABASE_URL) whose syntax is right but that names a file the
// process cannot read (sslrootcert, sslcert, a service file) must not be
// reported as one that "does not parse": the operator would look for a
// typo in a correct URL. The error names the file and why, and still no
// part of the password.
func TestDatabaseURLErrorSaysWhyAValidURLFails(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "db-ca.pem")
	for _, c := range []struct{ name, url string }{
		{"DATABASE_URL", "postgres://app:s3cretPW@db.internal/inv?sslmode=verify-full&sslrootcert=" + missing},
		{"DATABASE_URL", "host=db.internal user=app password=s3cretPW dbname=inv sslmode=verify-full sslrootcert=" + missing},
		{"MIGRATIONS_DATABASE_URL", "postgres://owner:s3cretPW@db.internal/inv?sslmode=verify-ca&sslrootcert=" + missing},
	} {
		m := map[string]string{"DATABASE_URL": "postgres://db/inv"}
		m[c.name] = c.url
		_, err := FromEnv(env(m))
		if err == nil {
			t.Fatalf("%s with an unreadable sslrootcert: accepted", c.name)
		}
		msg := err.Error()
		if !strings.Contains(msg, c.name) || !strings.Contains(msg, missing) || strings.Contains(msg, "does not parse") {
			t.Errorf("%s with an unreadable sslrootcert: error %q, want it to name the variable and the file it cannot read, not a parse error", c.name, msg)
		}
		if strings.Contains(msg, "s3cretPW") {
			t.Errorf("the error quotes the password: %v", err)
		}
	}
}
