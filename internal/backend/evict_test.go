package backend_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestOpenWarnsOfAnEvictingRedis: asynq's queues, the fair dispatcher's
// backlogs and counters and the cache's guard keys must never be evicted
// (docs/operations.md, "Redis settings": maxmemory-policy noeviction). A Redis whose
// policy evicts drops them without a word at maxmemory, so both binaries
// (which open their Redis here) warn at start naming the policy; with
// noeviction they say nothing of it.
func TestOpenWarnsOfAnEvictingRedis(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"allkeys-lru", "volatile-lru", "noeviction"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			rs := testenv.StartRedis(t, testenv.RedisOptions{ExtraArgs: []string{"--maxmemory", "64mb", "--maxmemory-policy", policy}})
			logs := openLogging(t, rs.URL())
			warned := strings.Contains(logs.String(), "maxmemory-policy")
			switch {
			case policy != "noeviction" && !warned:
				t.Errorf("Redis with maxmemory-policy %s: no warning at start; logs: %s", policy, logs.String())
			case policy != "noeviction" && !strings.Contains(logs.String(), policy):
				t.Errorf("the warning does not name the policy %s: %s", policy, logs.String())
			case policy == "noeviction" && warned:
				t.Errorf("Redis with maxmemory-policy noeviction: warned anyway: %s", logs.String())
			}
		})
	}
}

// TestOpenWarnsWhenTheRedisUserMayNotReadThePolicy: a managed Redis hands
// the app an ACL user without @dangerous (ACL SETUSER app ... +@all
// -@dangerous), which INFO belongs to, and the managed services' default
// maxmemory-policy is volatile-lru. The check of
// TestOpenWarnsOfAnEvictingRedis cannot run then; both binaries say so at
// warn level, so that the operator checks the policy by other means,
// rather than start as if Redis had said noeviction.
func TestOpenWarnsWhenTheRedisUserMayNotReadThePolicy(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t, testenv.RedisOptions{ExtraArgs: []string{"--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"}})
	admin := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer admin.Close()
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-@dangerous").Err(); err != nil {
		t.Fatal(err)
	}
	logs := openLogging(t, "redis://app:pw@"+rs.Addr())
	if !warnedUnchecked(logs) {
		t.Errorf("INFO refused to the Redis user: no warning that the maxmemory-policy was not checked; logs: %s", logs.String())
	}
}

// TestOpenWarnsWhenRedisHasNoInfo: a Redis hardened with rename-command
// INFO "" answers INFO "unknown command"; as with an ACL user that may
// not run it (TestOpenWarnsWhenTheRedisUserMayNotReadThePolicy), the
// start goes on and warns that the maxmemory-policy was not checked.
func TestOpenWarnsWhenRedisHasNoInfo(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t, testenv.RedisOptions{ExtraArgs: []string{"--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru", "--rename-command", "INFO", ""}})
	logs := openLogging(t, rs.URL())
	if !warnedUnchecked(logs) {
		t.Errorf("INFO disabled by rename-command: no warning that the maxmemory-policy was not checked; logs: %s", logs.String())
	}
}

// warnedUnchecked reports whether logs have a warning that Redis's
// maxmemory-policy was not checked, naming the policy to set.
func warnedUnchecked(logs *testenv.LogBuffer) bool {
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "could not check redis maxmemory-policy") && strings.Contains(line, "noeviction") {
			return true
		}
	}
	return false
}

// openLogging opens a backend on redisURL (and the test's database) and
// returns what it logged at start; the backend is closed at the test's end.
func openLogging(t *testing.T, redisURL string) *testenv.LogBuffer {
	t.Helper()
	e := env(t)
	e["REDIS_URL"] = redisURL
	cfg, err := config.FromEnv(getenv(e))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	b, err := backend.Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil)), backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return logs
}
