package config

import (
	"crypto/tls"
	"reflect"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestWithContextTimeoutsKeepsEveryOption: the enqueue service's client
// (WithContextTimeouts) is the one asynq would make from every REDIS_URL
// form, plus ContextTimeoutEnabled: no address, credential, database,
// TLS setting or cluster reload interval is dropped.
func TestWithContextTimeoutsKeepsEveryOption(t *testing.T) {
	for _, raw := range []string{
		"redis://app:s3cret@127.0.0.1:6380/4",
		"rediss://:pw@localhost:6390/2",
		"redis-socket://:pw@/tmp/redis.sock?db=3",
		"redis-sentinel://su:sp@127.0.0.1:26379,127.0.0.1:26380/5?master=mymaster&username=mu&password=mp",
		"redis-cluster://cu:cp@127.0.0.1:7000,127.0.0.1:7001",
		"rediss-sentinel://su:sp@127.0.0.1:26379/5?master=mymaster&username=mu&password=mp",
		"rediss-cluster://cu:cp@127.0.0.1:7000,127.0.0.1:7001",
	} {
		t.Run(raw, func(t *testing.T) {
			opt, err := ParseRedisURL(raw)
			if err != nil {
				t.Fatal(err)
			}
			plain := opt.MakeRedisClient().(redis.UniversalClient)
			timed := WithContextTimeouts(opt).MakeRedisClient().(redis.UniversalClient)
			defer plain.Close()
			defer timed.Close()
			if IsRedisCluster(opt) != IsRedisCluster(WithContextTimeouts(opt)) {
				t.Errorf("IsRedisCluster differs")
			}
			switch p := plain.(type) {
			case *redis.Client:
				po, to := *p.Options(), *timed.(*redis.Client).Options()
				if !to.ContextTimeoutEnabled {
					t.Error("ContextTimeoutEnabled not set")
				}
				to.ContextTimeoutEnabled = false
				compare(t, po.Network, to.Network, po.Addr, to.Addr, po.Username, to.Username, po.Password, to.Password,
					po.DB, to.DB, po.DialTimeout, to.DialTimeout, po.ReadTimeout, to.ReadTimeout, po.WriteTimeout, to.WriteTimeout,
					po.PoolSize, to.PoolSize, po.MaxRetries, to.MaxRetries, po.MinIdleConns, to.MinIdleConns, tlsName(po.TLSConfig), tlsName(to.TLSConfig))
			case *redis.ClusterClient:
				po, to := *p.Options(), *timed.(*redis.ClusterClient).Options()
				if !to.ContextTimeoutEnabled {
					t.Error("ContextTimeoutEnabled not set")
				}
				compare(t, po.Addrs, to.Addrs, po.Username, to.Username, po.Password, to.Password, po.MaxRedirects, to.MaxRedirects,
					po.ReadTimeout, to.ReadTimeout, po.PoolSize, to.PoolSize, po.ClusterStateReloadInterval, to.ClusterStateReloadInterval,
					tlsName(po.TLSConfig), tlsName(to.TLSConfig))
			default:
				t.Fatalf("client %T", plain)
			}
		})
	}
}

func tlsName(c *tls.Config) any {
	if c == nil {
		return nil
	}
	return c.ServerName
}

func compare(t *testing.T, pairs ...any) {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !reflect.DeepEqual(pairs[i], pairs[i+1]) {
			t.Errorf("field %d: asynq's client %v, WithContextTimeouts's %v", i/2, pairs[i], pairs[i+1])
		}
	}
}
