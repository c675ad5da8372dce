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

// TestRedisURLErrorHidesPasswordWithReservedCharacters: a password with
// an unencoded '/', '?', '#' or '&' (common in generated passwords) makes
// the URL parse differently, and the error must not quote the piece of the
// password that ended up in the port, the host or a query parameter's
// name.
func TestRedisURLErrorHidesPasswordWithReservedCharacters(t *testing.T) {
	t.Parallel()
	const left, right = "leftHalfPW", "rightHalfPW"
	for _, raw := range []string{
		"redis://:" + left + "/" + right + "@redis.internal:6379",
		"redis://app:" + left + "?" + right + "@redis.internal:6379",
		"rediss://app:" + left + "#" + right + "@redis.internal:6380",
		"redis-socket://:" + left + "/" + right + "@/run/redis.sock",
		"redis-sentinel://:" + left + "/" + right + "@s1:26379,s2:26379?master=mymaster",
		"redis-sentinel://s1:26379?master=mymaster&password=" + left + "&" + right,
		"redis-sentinel://s1:26379?master=mymaster&password=" + left + "&" + right + "=x",
	} {
		_, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://db/inv", "REDIS_URL": raw}))
		if err == nil {
			t.Errorf("REDIS_URL with an unencoded reserved character in the password: accepted")
			continue
		}
		if !strings.Contains(err.Error(), "REDIS_URL") {
			t.Errorf("error %q does not name REDIS_URL", err)
		}
		if strings.Contains(err.Error(), left) || strings.Contains(err.Error(), right) {
			t.Errorf("the error quotes part of the password: %v", err)
		}
	}
}
