package config

import (
	"strings"
	"testing"

	"github.com/hibiken/asynq"
)

// TestParseRedisURLRefusesWhatAsynqIgnores: asynq's redis:// and
// rediss:// forms read the host, the password and the first path segment,
// and drop the rest without a word. go-redis's own URL form takes the
// database and options as parameters (redis://host:6379?db=3), so a
// REDIS_URL written that way started every process on database 0, which
// another deployment sharing the Redis may use: its workers then take
// this one's tasks. What would be dropped is refused, naming REDIS_URL, as
// the Sentinel and Cluster forms refuse what they do not use.
func TestParseRedisURLRefusesWhatAsynqIgnores(t *testing.T) {
	for _, raw := range []string{
		"redis://127.0.0.1:6379?db=3",
		"redis://127.0.0.1:6379/2?dial_timeout=1s",
		"rediss://redis.example.com:6380?skip_verify=true",
		"redis://127.0.0.1:6379/2/3",
		"redis://127.0.0.1:6379/2#x",
		"redis-socket:///run/redis.sock?db=2&pool_size=3",
		"redis-socket:///run/redis.sock#x",
	} {
		c := Config{DatabaseURL: "postgres://x", RedisURL: raw}
		if _, err := c.Resolve(); err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
			opt, _ := ParseRedisURL(raw)
			t.Errorf("REDIS_URL=%s: Resolve error %v, want a REDIS_URL error (parsed as %#v)", raw, err, opt)
		}
	}
	for raw, db := range map[string]int{
		"redis://127.0.0.1:6379":              0,
		"redis://:pw@127.0.0.1:6379/4":        4,
		"rediss://redis.example.com:6380/1":   1,
		"redis-socket:///run/redis.sock?db=2": 2,
		"redis-socket://:pw@/run/redis.sock":  0,
	} {
		opt, err := ParseRedisURL(raw)
		if err != nil {
			t.Errorf("ParseRedisURL(%q): %v", raw, err)
			continue
		}
		if o, ok := opt.(asynq.RedisClientOpt); !ok || o.DB != db {
			t.Errorf("ParseRedisURL(%q) = %#v, want database %d", raw, opt, db)
		}
	}
}
