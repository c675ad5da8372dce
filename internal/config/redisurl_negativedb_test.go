package config

import (
	"strings"
	"testing"
)

// TestRedisURLNegativeDatabaseIsRefused: asynq reads the database of a
// redis://, rediss:// or redis-socket:// URL with strconv.Atoi and keeps a
// negative one, and go-redis selects a database only when it is above 0:
// REDIS_URL=redis://host:6379/-1 started every process on database 0,
// which another deployment sharing the Redis may use, without a word. It
// is refused, naming REDIS_URL, as the Sentinel form refuses it.
func TestRedisURLNegativeDatabaseIsRefused(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"redis://127.0.0.1:6379/-1",
		"rediss://:pw@redis.example.com:6380/-3",
		"redis-socket:///run/redis.sock?db=-2",
		"redis-sentinel://s1:26379/-1?master=m",
	} {
		_, err := Config{DatabaseURL: "postgres://x", RedisURL: raw}.Resolve()
		if err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
			opt, _ := ParseRedisURL(raw)
			t.Errorf("REDIS_URL=%s: Resolve error %v, want a REDIS_URL error (parsed as %+v)", raw, err, opt)
		}
	}
}
