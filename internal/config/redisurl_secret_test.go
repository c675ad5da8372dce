package config

import (
	"strings"
	"testing"
)

// TestRedisURLErrorHidesPassword: a REDIS_URL that does not parse must not
// put its password into the start-up error (cmd/worker prints it to
// stderr, where it reaches log collectors), as TENANT_DATABASES,
// redis-cluster:// and SMTP_URL already take care not to.
func TestRedisURLErrorHidesPassword(t *testing.T) {
	const secret = "s3cretPW"
	for _, raw := range []string{
		"redis://:" + secret + "@redis.internal:port",
		"rediss://app:" + secret + "@redis internal:6380",
		"redis://:" + secret + "%zz@redis.internal:6379",
	} {
		_, err := Config{DatabaseURL: "postgres://x", RedisURL: raw}.Resolve()
		if err == nil {
			t.Errorf("Resolve(REDIS_URL=%q): no error", raw)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Resolve(REDIS_URL=<bad url>) error quotes the password: %v", err)
		}
		if _, err := (Config{RedisURL: raw}).RedisConnOpt(); err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("RedisConnOpt error quotes the password: %v", err)
		}
	}
}
