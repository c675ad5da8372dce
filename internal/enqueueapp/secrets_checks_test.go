package enqueueapp_test

import (
	"strings"
	"testing"
)

// TestNoPasswordInErrors: failures of db add and configuration
// errors do not print a password.
func TestNoPasswordInErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, u := range []string{
		"postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=2",
		"postgres://u:s3cret@127.0.0.1:1/x?sslmode=bogus",
		"postgres://u:s3cret@[::1/x",
		"host=127.0.0.1 port=1 user=u password=s3cret connect_timeout=2",
		"host=127.0.0.1 port=1 user=u password=s3cret sslmode=bogus",
		"postgres://u@127.0.0.1:1/x?password=s3cret&sslmode=bogus",
	} {
		code, stdout, stderr := f.run(t, false, "db", "add", "eu3", u)
		t.Logf("%s: exit %d stderr %q", u, code, stderr)
		if code == 0 || strings.Contains(stdout+stderr, "s3cret") {
			t.Errorf("db add %s: exit %d stdout %q stderr %q", u, code, stdout, stderr)
		}
	}
	for k, v := range map[string]string{
		"REDIS_URL":               "redis://:s3cret@127.0.0.1:6379/bogus",
		"TENANT_DATABASES":        "eu2=postgres://u:s3cret@[::1/x",
		"DATABASE_URL":            "postgres://u:s3cret@[::1/x",
		"MIGRATIONS_DATABASE_URL": "postgres://u:s3cret@127.0.0.1:5432/x?sslmode=bogus",
	} {
		e := map[string]string{}
		for a, b := range f.env {
			e[a] = b
		}
		e[k] = v
		g := &fixture{env: e, deps: f.deps}
		for _, args := range [][]string{{"db", "list"}, {"queues"}, {"dispatch-mode"}} {
			code, stdout, stderr := g.run(t, false, args...)
			t.Logf("%s %q: exit %d stderr %q", k, args, code, stderr)
			if strings.Contains(stdout+stderr, "s3cret") {
				t.Errorf("%s=%s %q: exit %d stdout %q stderr %q", k, v, args, code, stdout, stderr)
			}
		}
	}
}
