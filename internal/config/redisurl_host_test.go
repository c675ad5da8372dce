package config

import (
	"strings"
	"testing"
)

// TestRedisURLWithoutHostOrPortIsRefused: asynq takes the authority of a
// redis:// or rediss:// URL as the address to dial as it is, and go-redis
// dials localhost:6379 for an empty one and the local host for ":port".
// REDIS_URL=redis://$REDIS_HOST:6379 with REDIS_HOST unset started every
// process against whatever Redis listens on the machine itself, without a
// word; and a host without a port, or a port out of range, failed only
// later, at the first connection, in an error that did not name
// REDIS_URL. Each is refused at start, naming REDIS_URL and quoting
// nothing of the URL (it may hold a password), as the Sentinel and Cluster
// forms refuse a node that is not host:port.
func TestRedisURLWithoutHostOrPortIsRefused(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"redis://",
		"redis://:6379",
		"redis://:6379/2",
		"redis://:s3cretPW@:6379/2",
		"redis://:s3cretPW@/2",
		"rediss://app:s3cretPW@:6380",
		"redis://127.0.0.1",
		"redis://:s3cretPW@redis.internal/3",
		"redis://redis.internal:99999",
		"redis://redis.internal:0",
		"rediss://[::1]",
	} {
		_, err := Config{DatabaseURL: "postgres://x", RedisURL: raw}.Resolve()
		if err == nil {
			opt, _ := ParseRedisURL(raw)
			t.Errorf("REDIS_URL=%s: accepted (parsed as %+v)", raw, opt)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "REDIS_URL: ") || !strings.Contains(msg, "host:port") || strings.Contains(msg, "s3cretPW") {
			t.Errorf("REDIS_URL=%s: error %q, want one naming REDIS_URL and host:port, without the password", raw, msg)
		}
	}
	for _, raw := range []string{
		"redis://127.0.0.1:6379",
		"redis://:pw@redis.internal:6379/3",
		"rediss://app:pw@[::1]:6380/1",
	} {
		if _, err := (Config{DatabaseURL: "postgres://x", RedisURL: raw}).Resolve(); err != nil {
			t.Errorf("REDIS_URL=%s: %v", raw, err)
		}
	}
}
