package config

import (
	"strings"
	"testing"
)

// TestRedisURLPasswordWithDigitsBeforeAReservedCharacter: a password
// whose first characters are digits, followed by an unencoded '/' or '?'
// (base64 and generated passwords hold both), parses as a URL: the digits
// become the port of the authority and the rest of the password its path
// or query. The Sentinel form quoted the Sentinel address (":98765432")
// or the database ("xyzPW@s1:26379") it then refused, and a
// redis-socket:// URL took the authority for a host it ignores and the
// rest of the password for the socket's path, which the start-up's dial
// error then quoted. Each is refused without quoting any of it.
func TestRedisURLPasswordWithDigitsBeforeAReservedCharacter(t *testing.T) {
	t.Parallel()
	const digits, rest = "98765432", "restOfPW"
	for _, raw := range []string{
		"redis-sentinel://:" + digits + "/" + rest + "@s1:26379?master=m",
		"redis-sentinel://:1234?" + rest + "@s1:26379&master=m",
		"redis-sentinel://watch:1234/" + rest + "@s1:26379?master=m",
		"rediss-sentinel://watch:1234/" + rest + "@s1:26379?master=m",
		"redis-socket://app:1234/" + rest + "@/run/redis.sock",
	} {
		_, err := Config{DatabaseURL: "postgres://x", RedisURL: raw}.Resolve()
		if err == nil {
			opt, _ := ParseRedisURL(raw)
			t.Errorf("REDIS_URL with a password holding an unencoded '/' or '?': accepted as %+v", opt)
			continue
		}
		if !strings.Contains(err.Error(), "REDIS_URL") {
			t.Errorf("error %q does not name REDIS_URL", err)
		}
		if strings.Contains(err.Error(), digits) || strings.Contains(err.Error(), rest) || strings.Contains(err.Error(), "1234") {
			t.Errorf("the error quotes part of the password: %v", err)
		}
	}
}
