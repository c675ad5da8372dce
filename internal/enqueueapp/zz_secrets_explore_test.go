package enqueueapp_test

import (
	"strings"
	"testing"
)

func TestExploreSecrets(t *testing.T) {
	f := newFixture(t)
	for k, vs := range map[string][]string{
		"REDIS_URL":               {"redis://:s3cret@127.0.0.1:notaport/0", "redis://u:s3cret@127.0.0.1:1/0", "redis://:s3cret@127.0.0.1:6379/0?dial_timeout=bogus", "redis://:s3cret@127.0.0.1:6379/0?foo=bar", "rediss://:s3cret@[::1/0", "redis://:s3cret@127.0.0.1:6379/0 x", "redis-sentinel://:s3cret@127.0.0.1:1/mymaster"},
		"DATABASE_URL":            {"postgres://u:s3cret@127.0.0.1:notaport/x", "postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=1", "postgres://u:s3cret@127.0.0.1:1/x?pool_max_conns=bogus", "host=127.0.0.1 password=s3cret port=bogus"},
		"TENANT_DATABASES":        {"eu2=postgres://u:s3cret@127.0.0.1:notaport/x", "eu2=postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=1", "EU 2=postgres://u:s3cret@127.0.0.1/x", "eu2=postgres://u:s3cret@h/x,eu2=postgres://u:s3cret@h/y", "eu2=postgres://u:s3cret@127.0.0.1:1/x?pool_max_conns=bogus"},
		"MIGRATIONS_DATABASE_URL": {"postgres://u:s3cret@127.0.0.1:notaport/x", "postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=1", "postgres://u:s3cret@127.0.0.1:1/x?pool_max_conns=bogus"},
	} {
		for _, v := range vs {
			e := map[string]string{}
			for a, b := range f.env {
				e[a] = b
			}
			e[k] = v
			g := &fixture{env: e, deps: f.deps}
			for _, args := range [][]string{{"db", "list"}, {"dispatch-mode"}, {"migrate", "--all"}} {
				code, stdout, stderr := g.run(t, false, args...)
				if strings.Contains(stdout+stderr, "s3cret") {
					t.Errorf("%s=%s %q: exit %d stdout %q stderr %q", k, v, args, code, stdout, stderr)
				} else {
					t.Logf("%s=%s %q: exit %d stderr %q", k, v, args, code, stderr)
				}
			}
		}
	}
}
