package config

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestRedisURLUserWithoutPassword: go-redis logs in (HELLO ... AUTH, or
// AUTH) only when it has a password, so a REDIS_URL whose user
// information has a user and no password connected as Redis's default
// user without a word: redis://app@host, for an ACL user app, ran with the
// default user's permissions, and redis://s3cret@host (the password
// written without the ':' before it, as the usage
// redis[s]://[user:]password@... reads) was refused by a server with a
// password only as NOAUTH. Such a URL is refused, naming REDIS_URL, in
// every form, without quoting what stands before '@'.
func TestRedisURLUserWithoutPassword(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	ctx := t.Context()
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", "nopass", "~app:*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	raw := "redis://app@" + srv.Addr()
	if opt, err := ParseRedisURL(raw); err == nil {
		rdb := opt.MakeRedisClient().(redis.UniversalClient)
		defer rdb.Close()
		who, err := rdb.Do(ctx, "ACL", "WHOAMI").Text()
		t.Errorf("REDIS_URL=%s accepted: connected as %q (%v), want app or a start-up error", raw, who, err)
	}
	const secret = "s3cretPW"
	for _, raw := range []string{
		"redis://" + secret + "@127.0.0.1:6379",
		"rediss://" + secret + "@redis.example.com:6380/1",
		"redis-socket://" + secret + "@/run/redis.sock",
		"redis-cluster://" + secret + "@h1:7000,h2:7001",
		"rediss-cluster://" + secret + "@h1:7000",
		"redis-sentinel://" + secret + "@s1:26379?master=m",
		"redis-sentinel://s1:26379?master=m&username=" + secret,
	} {
		_, err := Config{DatabaseURL: "postgres://x", RedisURL: raw}.Resolve()
		if err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
			t.Errorf("REDIS_URL with a user and no password: error %v, want a REDIS_URL error", err)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error quotes what stands before '@': %v", err)
		}
	}
}
