package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func TestParseRedisURLCluster(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want asynq.RedisClusterClientOpt
	}{
		{"redis-cluster://127.0.0.1:7000,127.0.0.1:7001", asynq.RedisClusterClientOpt{Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}}},
		{"redis-cluster://redis-a:6379", asynq.RedisClusterClientOpt{Addrs: []string{"redis-a:6379"}}},
		{"redis-cluster://:s3cret@a:1,b:2", asynq.RedisClusterClientOpt{Addrs: []string{"a:1", "b:2"}, Password: "s3cret"}},
		{"redis-cluster://app:p%40ss%3Aw@a:1,[::1]:2,", asynq.RedisClusterClientOpt{Addrs: []string{"a:1", "[::1]:2"}, Username: "app", Password: "p@ss:w"}},
	} {
		opt, err := ParseRedisURL(tc.raw)
		if err != nil {
			t.Errorf("ParseRedisURL(%q): %v", tc.raw, err)
			continue
		}
		if !reflect.DeepEqual(opt, RedisClusterOpt{RedisClusterClientOpt: tc.want, StateReloadInterval: DefaultClusterStateReloadInterval}) {
			t.Errorf("ParseRedisURL(%q) = %#v, want %#v", tc.raw, opt, tc.want)
		}
		if !IsRedisCluster(opt) {
			t.Errorf("IsRedisCluster(%q) = false", tc.raw)
		}
		rc, ok := opt.MakeRedisClient().(*redis.ClusterClient)
		if !ok {
			t.Fatalf("MakeRedisClient of %q = %T, want *redis.ClusterClient", tc.raw, opt.MakeRedisClient())
		}
		if got := rc.Options(); got.ClusterStateReloadInterval != DefaultClusterStateReloadInterval || len(got.Addrs) != len(tc.want.Addrs) || got.Password != tc.want.Password {
			t.Errorf("cluster client options of %q = %+v", tc.raw, got)
		}
		_ = rc.Close()
	}
}

func TestParseRedisURLClusterRejects(t *testing.T) {
	for _, raw := range []string{
		"redis-cluster://",
		"redis-cluster://a",
		"redis-cluster://a:0",
		"redis-cluster://a:port",
		"redis-cluster://:1",
		"redis-cluster://a:1/0",
		"redis-cluster://a:1?x=y",
		"redis-cluster://:%zz@a:1",
	} {
		if opt, err := ParseRedisURL(raw); err == nil {
			t.Errorf("ParseRedisURL(%q) = %#v, want an error", raw, opt)
		} else if strings.Contains(err.Error(), "%zz") {
			t.Errorf("ParseRedisURL(%q): error quotes the password: %v", raw, err)
		}
	}
	c := Config{DatabaseURL: "postgres://x", RedisURL: "redis-cluster://"}
	if _, err := c.Resolve(); err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Errorf("Resolve with a bad cluster URL: %v, want a REDIS_URL error", err)
	}
}

func TestParseRedisURLSingle(t *testing.T) {
	opt, err := ParseRedisURL("redis://127.0.0.1:6380/2")
	if err != nil || IsRedisCluster(opt) {
		t.Fatalf("ParseRedisURL(redis://...) = %#v, %v", opt, err)
	}
	if o := opt.(asynq.RedisClientOpt); o.Addr != "127.0.0.1:6380" || o.DB != 2 {
		t.Errorf("ParseRedisURL(redis://...) = %#v", o)
	}
	// A path of "/" alone names no database: database 0, as without the
	// slash (and as go-redis reads it); asynq refused it with "database
	// number should be the first segment of the path".
	for _, raw := range []string{"redis://127.0.0.1:6380/", "rediss://:pw@127.0.0.1:6380/"} {
		opt, err := ParseRedisURL(raw)
		if err != nil {
			t.Errorf("ParseRedisURL(%q): %v", raw, err)
			continue
		}
		if o := opt.(asynq.RedisClientOpt); o.Addr != "127.0.0.1:6380" || o.DB != 0 {
			t.Errorf("ParseRedisURL(%q) = %#v, want database 0 on 127.0.0.1:6380", raw, o)
		}
	}
}

func TestParseRedisURLSentinel(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want asynq.RedisFailoverClientOpt
	}{
		{"redis-sentinel://127.0.0.1:26379?master=mymaster", asynq.RedisFailoverClientOpt{MasterName: "mymaster", SentinelAddrs: []string{"127.0.0.1:26379"}}},
		{"redis-sentinel://:s3cret@a:1,b:2/3?master=m", asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"a:1", "b:2"}, SentinelPassword: "s3cret", DB: 3}},
		{"redis-sentinel://watch:s%40t@a:1/?master=m&username=app&password=p%40ss%3Aw%2F%23%26&db=2", asynq.RedisFailoverClientOpt{
			MasterName: "m", SentinelAddrs: []string{"a:1"}, SentinelUsername: "watch", SentinelPassword: "s@t",
			Username: "app", Password: "p@ss:w/#&", DB: 2,
		}},
		{"redis-sentinel://a:1/4?db=4&master=m", asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"a:1"}, DB: 4}},
	} {
		opt, err := ParseRedisURL(tc.raw)
		if err != nil {
			t.Errorf("ParseRedisURL(%q): %v", tc.raw, err)
			continue
		}
		if !reflect.DeepEqual(opt, tc.want) {
			t.Errorf("ParseRedisURL(%q) = %#v, want %#v", tc.raw, opt, tc.want)
		}
	}
}

// TestParseRedisURLSentinelRejects: a redis-sentinel:// URL that would
// connect somewhere else than meant (a misspelt parameter, no master, two
// databases) is refused, and the error never quotes a password.
func TestParseRedisURLSentinelRejects(t *testing.T) {
	const secret = "s3cretPW"
	for _, raw := range []string{
		"redis-sentinel://a:1",
		"redis-sentinel://a:1?master=",
		"redis-sentinel://a:1?master_name=m&password=" + secret,
		"redis-sentinel://a:1?master=m&passwd=" + secret,
		"redis-sentinel://a:1?master=m&password=" + secret + "&password=" + secret,
		"redis-sentinel://a:1?master=m&password=" + secret + "%zz",
		"redis-sentinel://a:1?master=m&password=" + secret + "#" + secret,
		"redis-sentinel://a:1/x?master=m&password=" + secret,
		"redis-sentinel://a:1/1/2?master=m",
		"redis-sentinel://a:1/1?master=m&db=2",
		"redis-sentinel://a:1?master=m&db=-1",
		"redis-sentinel://a,b:2?master=m",
		"redis-sentinel://a:1,?master=m",
		"redis-sentinel://?master=m",
	} {
		if opt, err := ParseRedisURL(raw); err == nil {
			t.Errorf("ParseRedisURL(%q) = %#v, want an error", raw, opt)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("ParseRedisURL(%q): error quotes the password: %v", raw, err)
		} else if _, err := (Config{DatabaseURL: "postgres://x", RedisURL: raw}).Resolve(); err == nil || !strings.Contains(err.Error(), "REDIS_URL") || strings.Contains(err.Error(), secret) {
			t.Errorf("Resolve(REDIS_URL=%q) = %v, want a REDIS_URL error without the password", raw, err)
		}
	}
}

// IsRedisSentinel tells the Sentinel form of REDIS_URL from the others,
// also once wrapped by WithContextTimeouts.
func TestIsRedisSentinel(t *testing.T) {
	for raw, want := range map[string]bool{
		"redis-sentinel://127.0.0.1:26379?master=mymaster": true,
		"redis://127.0.0.1:6379/0":                         false,
		"redis-cluster://127.0.0.1:7000":                   false,
	} {
		opt, err := ParseRedisURL(raw)
		if err != nil {
			t.Fatalf("ParseRedisURL(%q): %v", raw, err)
		}
		if got := IsRedisSentinel(opt); got != want {
			t.Errorf("IsRedisSentinel(%q) = %v, want %v", raw, got, want)
		}
		if got := IsRedisSentinel(WithContextTimeouts(opt)); got != want {
			t.Errorf("IsRedisSentinel(WithContextTimeouts(%q)) = %v, want %v", raw, got, want)
		}
	}
}
