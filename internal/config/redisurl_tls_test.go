package config

import (
	"crypto/tls"
	"reflect"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// tlsForm returns raw, a redis-cluster:// or redis-sentinel:// URL, in its
// TLS form (rediss-cluster://, rediss-sentinel://).
func tlsForm(raw string) string { return "rediss-" + strings.TrimPrefix(raw, "redis-") }

// checkRedisTLSConfig fails unless c is RedisTLSConfig's: TLS 1.2 or later,
// the system's CAs, the certificate verified, no fixed ServerName (each
// node's host as it is dialled).
func checkRedisTLSConfig(t *testing.T, raw string, c *tls.Config) {
	t.Helper()
	switch {
	case c == nil:
		t.Errorf("%s: no TLS config", raw)
	case c.MinVersion != tls.VersionTLS12 || c.ServerName != "" || c.RootCAs != nil || c.InsecureSkipVerify || c.Certificates != nil:
		t.Errorf("%s: TLS config MinVersion %#x, ServerName %q, RootCAs %v, InsecureSkipVerify %v: want TLS 1.2, no ServerName, the system CAs, verified",
			raw, c.MinVersion, c.ServerName, c.RootCAs, c.InsecureSkipVerify)
	}
}

// TestParseRedisURLTLSForms: rediss-cluster:// and rediss-sentinel:// are
// their non-TLS forms with RedisTLSConfig, on the option and on every
// client made from it (asynq's, the enqueue service's
// WithContextTimeouts); the non-TLS forms have none.
func TestParseRedisURLTLSForms(t *testing.T) {
	for _, raw := range []string{
		"redis-cluster://127.0.0.1:7000,127.0.0.1:7001",
		"redis-cluster://app:p%40ss%3Aw@a:1,[::1]:2,",
		"redis-sentinel://127.0.0.1:26379?master=mymaster",
		"redis-sentinel://watch:s%40t@a:1,b:2/?master=m&username=app&password=p%40ss%3Aw%2F%23%26&db=2",
	} {
		plain, err := ParseRedisURL(raw)
		if err != nil {
			t.Fatalf("ParseRedisURL(%q): %v", raw, err)
		}
		secure, err := ParseRedisURL(tlsForm(raw))
		if err != nil {
			t.Fatalf("ParseRedisURL(%q): %v", tlsForm(raw), err)
		}
		var plainTLS, secureTLS *tls.Config
		switch p := plain.(type) {
		case RedisClusterOpt:
			s := secure.(RedisClusterOpt)
			plainTLS, secureTLS = p.TLSConfig, s.TLSConfig
			s.TLSConfig = nil
			secure = s
			if !IsRedisCluster(secure) || IsRedisSentinel(secure) {
				t.Errorf("%s: not a cluster", tlsForm(raw))
			}
		case asynq.RedisFailoverClientOpt:
			s := secure.(asynq.RedisFailoverClientOpt)
			plainTLS, secureTLS = p.TLSConfig, s.TLSConfig
			s.TLSConfig = nil
			secure = s
			if !IsRedisSentinel(secure) || IsRedisCluster(secure) {
				t.Errorf("%s: not a Sentinel", tlsForm(raw))
			}
		default:
			t.Fatalf("ParseRedisURL(%q) = %T", raw, plain)
		}
		if plainTLS != nil {
			t.Errorf("%s: TLS config %+v, want none", raw, plainTLS)
		}
		checkRedisTLSConfig(t, tlsForm(raw), secureTLS)
		if !reflect.DeepEqual(plain, secure) {
			t.Errorf("ParseRedisURL(%q) = %#v,\nwant %#v (ParseRedisURL(%q)) with TLS", tlsForm(raw), secure, plain, raw)
		}

		opt, _ := ParseRedisURL(tlsForm(raw))
		for name, o := range map[string]asynq.RedisConnOpt{"asynq": opt, "WithContextTimeouts": WithContextTimeouts(opt)} {
			var got *tls.Config
			switch c := o.MakeRedisClient().(type) {
			case *redis.ClusterClient:
				got = c.Options().TLSConfig
				_ = c.Close()
			case *redis.Client: // a failover client
				got = c.Options().TLSConfig
				_ = c.Close()
			default:
				t.Fatalf("%s client of %s: %T", name, tlsForm(raw), c)
			}
			checkRedisTLSConfig(t, name+" client of "+tlsForm(raw), got)
		}
	}
}

// TestParseRedisURLTLSFormsReject: the TLS forms refuse what their non-TLS
// forms refuse, name their own scheme, and never quote a password.
func TestParseRedisURLTLSFormsReject(t *testing.T) {
	const secret = "s3cretPW"
	for _, raw := range []string{
		"rediss-cluster://",
		"rediss-cluster://a",
		"rediss-cluster://a:0",
		"rediss-cluster://a:port",
		"rediss-cluster://:1",
		"rediss-cluster://a:1/0",
		"rediss-cluster://a:1?x=y",
		"rediss-cluster://:" + secret + "@a:1?tls=1",
		"rediss-cluster://:" + secret + "%zz@a:1",
		"rediss-cluster://app:" + secret + "/x@a:1",
		"rediss-sentinel://a:1",
		"rediss-sentinel://a:1?master=",
		"rediss-sentinel://a:1?master=m&skip_verify=true",
		"rediss-sentinel://a:1?master_name=m&password=" + secret,
		"rediss-sentinel://a:1?master=m&passwd=" + secret,
		"rediss-sentinel://a:1?master=m&password=" + secret + "&password=" + secret,
		"rediss-sentinel://a:1?master=m&password=" + secret + "%zz",
		"rediss-sentinel://a:1?master=m&password=" + secret + "#" + secret,
		"rediss-sentinel://:" + secret + "@a:1?master=m#x",
		"rediss-sentinel://a:1/x?master=m&password=" + secret,
		"rediss-sentinel://a:1/1/2?master=m",
		"rediss-sentinel://a:1/1?master=m&db=2",
		"rediss-sentinel://a:1?master=m&db=-1",
		"rediss-sentinel://a,b:2?master=m",
		"rediss-sentinel://a:1,?master=m",
		"rediss-sentinel://?master=m",
	} {
		scheme, _, _ := strings.Cut(raw, "://")
		opt, err := ParseRedisURL(raw)
		switch {
		case err == nil:
			t.Errorf("ParseRedisURL(%q) = %#v, want an error", raw, opt)
		case strings.Contains(err.Error(), secret):
			t.Errorf("ParseRedisURL(%q): error quotes the password: %v", raw, err)
		case !strings.HasPrefix(err.Error(), scheme+": ") && !strings.HasPrefix(err.Error(), "could not parse redis uri"):
			t.Errorf("ParseRedisURL(%q): error %q does not name %s", raw, err, scheme)
		}
		if _, err := (Config{DatabaseURL: "postgres://x", RedisURL: raw}).Resolve(); err == nil || !strings.Contains(err.Error(), "REDIS_URL") || strings.Contains(err.Error(), secret) {
			t.Errorf("Resolve(REDIS_URL=%q) = %v, want a REDIS_URL error without the password", raw, err)
		}
	}
}
