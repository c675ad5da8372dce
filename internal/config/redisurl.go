package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// RedisClusterScheme is the REDIS_URL scheme of a Redis Cluster:
//
//	redis-cluster://host1:port,host2:port,...
//	redis-cluster://:password@host1:port,host2:port
//	redis-cluster://user:password@host1:port,host2:port
//
// The hosts are seeds: the client asks any of them for the cluster's
// slot map and follows it (and its changes after a failover). User and
// password are percent-decoded and used on every node. A path, query or
// fragment is refused. asynq's own ParseRedisURI has no cluster form.
const RedisClusterScheme = "redis-cluster"

// RedisSentinelScheme is the REDIS_URL scheme of a master found through
// Redis Sentinel, after go-redis's ParseFailoverURL:
//
//	redis-sentinel://[user:password@]host1:port,host2:port[/db]?master=name[&username=user][&password=password][&db=N]
//
// The userinfo authenticates to the Sentinels; the username and password
// parameters to the master and its replicas; db (or the /db path) selects
// the database; master is the name the Sentinels monitor (required). All
// are percent-decoded; any other parameter or a fragment is refused. There
// is no TLS form. asynq's own ParseRedisURI gives the userinfo password to
// the Sentinels alone, so a master with a password is unreachable, and
// ignores the path.
const RedisSentinelScheme = "redis-sentinel"

// ParseRedisURL parses a REDIS_URL: redis-cluster:// (RedisClusterScheme)
// into asynq.RedisClusterClientOpt, redis-sentinel:// (RedisSentinelScheme)
// into asynq.RedisFailoverClientOpt, everything else with
// asynq.ParseRedisURI (redis://, rediss://, redis-socket://), whose
// redis[s]://user:password@... user (a Redis ACL user) is kept.
func ParseRedisURL(raw string) (asynq.RedisConnOpt, error) {
	rest, ok := strings.CutPrefix(raw, RedisClusterScheme+"://")
	if !ok {
		// asynq passes url.Parse's error on, which quotes the whole URL,
		// password included: parse it first and keep only the reason.
		u, err := url.Parse(raw)
		if err != nil {
			// Nor its reason, with user information: an unencoded '/',
			// '?' or '#' ends the password early, and the reason quotes
			// the rest of the authority ("invalid port \":s3cr\"").
			if strings.Contains(raw, "@") {
				return nil, errors.New("could not parse redis uri: not a URL (percent-encode '/', '?', '#', '%' and '@' in the user and password)")
			}
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("could not parse redis uri: %w", err)
		}
		if u.Scheme == RedisSentinelScheme {
			return parseRedisSentinelURL(u)
		}
		if err := checkRedisURLRest(u); err != nil {
			return nil, err
		}
		opt, err := asynq.ParseRedisURI(raw)
		if err != nil {
			return nil, err
		}
		// asynq keeps the password and drops the user: with Redis ACLs
		// (redis://app:secret@host) the client would log in as the
		// default user, or be refused.
		if o, ok := opt.(asynq.RedisClientOpt); ok && u.User != nil {
			o.Username = u.User.Username()
			opt = o
		}
		return opt, nil
	}
	if strings.ContainsAny(rest, "/?#") {
		return nil, errors.New("redis-cluster: a path, query or fragment is not supported: use redis-cluster://[user:password@]host:port,host:port,...")
	}
	var opt asynq.RedisClusterClientOpt
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		userinfo := rest[:i]
		rest = rest[i+1:]
		user, password, hasPassword := strings.Cut(userinfo, ":")
		var err error
		if opt.Username, err = url.PathUnescape(user); err != nil {
			return nil, fmt.Errorf("redis-cluster: user: %w", err)
		}
		if hasPassword {
			if opt.Password, err = url.PathUnescape(password); err != nil {
				// The error would quote the password.
				return nil, errors.New("redis-cluster: password: invalid percent-encoding")
			}
		}
	}
	for _, a := range strings.Split(rest, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("redis-cluster: node %q: %w", a, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 || host == "" {
			return nil, fmt.Errorf("redis-cluster: node %q: want host:port", a)
		}
		opt.Addrs = append(opt.Addrs, net.JoinHostPort(host, port))
	}
	if len(opt.Addrs) == 0 {
		return nil, errors.New("redis-cluster: no node: use redis-cluster://host:port,host:port,...")
	}
	return RedisClusterOpt{RedisClusterClientOpt: opt, StateReloadInterval: DefaultClusterStateReloadInterval}, nil
}

// checkRedisURLRest refuses what asynq.ParseRedisURI would drop without a
// word from a redis://, rediss:// or redis-socket:// URL: a query (but
// redis-socket's db), a fragment, path segments after redis[s]'s database.
// go-redis's own URL form takes the database and options as parameters
// (redis://host:6379?db=3), and asynq read that as database 0. The errors
// quote nothing of the URL (a misplaced password may be in any part).
func checkRedisURLRest(u *url.URL) error {
	if u.Fragment != "" || u.RawFragment != "" {
		return errors.New("could not parse redis uri: a fragment is not supported (percent-encode '#' in the user and password)")
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.RawQuery != "" || u.ForceQuery {
			return errors.New("could not parse redis uri: query parameters are not supported: use redis[s]://[user:]password@host:port/db (percent-encode '?' in the user and password)")
		}
		if strings.Contains(strings.Trim(u.Path, "/"), "/") {
			return errors.New("could not parse redis uri: want only the database number as the path: redis[s]://[user:]password@host:port/db")
		}
	case "redis-socket":
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return errors.New("could not parse redis socket uri: query: invalid percent-encoding")
		}
		for k := range q {
			if k != "db" {
				return errors.New("could not parse redis socket uri: unknown query parameter: want only db (redis-socket://[:password@]path[?db=N])")
			}
		}
	}
	return nil
}

// parseRedisSentinelURL parses a redis-sentinel:// URL (RedisSentinelScheme).
// Its errors never quote a password.
func parseRedisSentinelURL(u *url.URL) (asynq.RedisConnOpt, error) {
	const usage = "use redis-sentinel://[user:password@]host:port,host:port[/db]?master=name[&username=user][&password=password][&db=N]"
	var opt asynq.RedisFailoverClientOpt
	if u.User != nil {
		opt.SentinelUsername = u.User.Username()
		opt.SentinelPassword, _ = u.User.Password()
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("redis-sentinel: a fragment is not supported (percent-encode # as %%23): %s", usage)
	}
	for _, a := range strings.Split(u.Host, ",") {
		host, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n <= 0 || n > 65535 || host == "" {
			return nil, fmt.Errorf("redis-sentinel: sentinel %q: want host:port: %s", a, usage)
		}
		opt.SentinelAddrs = append(opt.SentinelAddrs, a)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// The error would quote the query, password included.
		return nil, errors.New("redis-sentinel: query: invalid percent-encoding")
	}
	db := strings.Trim(u.Path, "/")
	for k, v := range q {
		if len(v) != 1 {
			return nil, fmt.Errorf("redis-sentinel: query parameter %q given %d times", k, len(v))
		}
		switch k {
		case "master":
			opt.MasterName = v[0]
		case "username":
			opt.Username = v[0]
		case "password":
			opt.Password = v[0]
		case "db":
			if db != "" && db != v[0] {
				return nil, errors.New("redis-sentinel: the path and the db parameter name different databases")
			}
			db = v[0]
		default:
			if q.Has("password") {
				// An unencoded '&' in the password makes its rest a
				// parameter of its own: the name is not quoted.
				return nil, errors.New("redis-sentinel: unknown query parameter: want master, username, password or db (percent-encode '&' in a password as %26)")
			}
			return nil, fmt.Errorf("redis-sentinel: unknown query parameter %.40q: want master, username, password or db", k)
		}
	}
	if opt.MasterName == "" {
		return nil, fmt.Errorf("redis-sentinel: master: required (the name the Sentinels monitor): %s", usage)
	}
	if db != "" {
		if opt.DB, err = strconv.Atoi(db); err != nil || opt.DB < 0 {
			return nil, fmt.Errorf("redis-sentinel: database: want a number, got %.20q", db)
		}
	}
	return opt, nil
}

// DefaultClusterStateReloadInterval is RedisClusterOpt.StateReloadInterval
// of a parsed redis-cluster:// URL.
const DefaultClusterStateReloadInterval = time.Second

// RedisClusterOpt is asynq.RedisClusterClientOpt plus what a failover
// needs. go-redis learns a new slot map on its own only from a MOVED or
// ASK reply; a master that died answers nothing, so without a periodic
// reload the client keeps sending that master's slots to the dead address
// until its ClusterStateReloadInterval (60 s by default) passes, long after
// the cluster promoted a replica. Every client made from this option
// reloads the slot map (one CLUSTER SLOTS) when it is used and its map is
// older than StateReloadInterval.
type RedisClusterOpt struct {
	asynq.RedisClusterClientOpt
	// StateReloadInterval is go-redis's ClusterStateReloadInterval; 0
	// means go-redis's default (60 s).
	StateReloadInterval time.Duration
}

// MakeRedisClient returns a *redis.ClusterClient (asynq.RedisConnOpt).
func (o RedisClusterOpt) MakeRedisClient() any {
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                      o.Addrs,
		MaxRedirects:               o.MaxRedirects,
		Username:                   o.Username,
		Password:                   o.Password,
		DialTimeout:                o.DialTimeout,
		ReadTimeout:                o.ReadTimeout,
		WriteTimeout:               o.WriteTimeout,
		TLSConfig:                  o.TLSConfig,
		ClusterStateReloadInterval: o.StateReloadInterval,
	})
}

// IsRedisCluster reports whether opt connects to a Redis Cluster.
func IsRedisCluster(opt asynq.RedisConnOpt) bool {
	if o, ok := opt.(contextTimeoutOpt); ok {
		opt = o.RedisConnOpt
	}
	switch opt.(type) {
	case RedisClusterOpt, *RedisClusterOpt, asynq.RedisClusterClientOpt, *asynq.RedisClusterClientOpt:
		return true
	}
	return false
}

// IsRedisSentinel reports whether opt connects through Redis Sentinel
// (redis-sentinel://): its clients dial whichever server the Sentinels
// name master.
func IsRedisSentinel(opt asynq.RedisConnOpt) bool {
	if o, ok := opt.(contextTimeoutOpt); ok {
		opt = o.RedisConnOpt
	}
	switch opt.(type) {
	case asynq.RedisFailoverClientOpt, *asynq.RedisFailoverClientOpt:
		return true
	}
	return false
}

// WithContextTimeouts returns opt whose clients end a command at its
// context's deadline (go-redis ContextTimeoutEnabled): a read from a Redis
// that does not answer stops when the caller's time is up, not after the
// client's ReadTimeout (3 s by default) and its retries. A command cut so
// may still have run on Redis (its outcome is unknown, as after a read
// timeout) and its connection is closed, not reused. Calls without a
// deadline are bounded by the timeouts as before. A kind of option it does
// not know is returned as it is.
func WithContextTimeouts(opt asynq.RedisConnOpt) asynq.RedisConnOpt {
	switch opt.(type) {
	case asynq.RedisClientOpt, asynq.RedisFailoverClientOpt, asynq.RedisClusterClientOpt, RedisClusterOpt:
		return contextTimeoutOpt{opt}
	}
	return opt
}

// contextTimeoutOpt is WithContextTimeouts's option.
type contextTimeoutOpt struct{ asynq.RedisConnOpt }

// MakeRedisClient makes the client asynq would, with ContextTimeoutEnabled.
func (o contextTimeoutOpt) MakeRedisClient() any {
	switch opt := o.RedisConnOpt.(type) {
	case asynq.RedisClientOpt:
		return redis.NewClient(&redis.Options{
			Network: opt.Network, Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DB: opt.DB,
			DialTimeout: opt.DialTimeout, ReadTimeout: opt.ReadTimeout, WriteTimeout: opt.WriteTimeout,
			PoolSize: opt.PoolSize, TLSConfig: opt.TLSConfig, ContextTimeoutEnabled: true,
		})
	case asynq.RedisFailoverClientOpt:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: opt.MasterName, SentinelAddrs: opt.SentinelAddrs, SentinelUsername: opt.SentinelUsername,
			SentinelPassword: opt.SentinelPassword, Username: opt.Username, Password: opt.Password, DB: opt.DB,
			DialTimeout: opt.DialTimeout, ReadTimeout: opt.ReadTimeout, WriteTimeout: opt.WriteTimeout,
			PoolSize: opt.PoolSize, TLSConfig: opt.TLSConfig, ContextTimeoutEnabled: true,
		})
	case asynq.RedisClusterClientOpt:
		return contextTimeoutOpt{RedisClusterOpt{RedisClusterClientOpt: opt}}.MakeRedisClient()
	case RedisClusterOpt:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: opt.Addrs, MaxRedirects: opt.MaxRedirects, Username: opt.Username, Password: opt.Password,
			DialTimeout: opt.DialTimeout, ReadTimeout: opt.ReadTimeout, WriteTimeout: opt.WriteTimeout,
			TLSConfig: opt.TLSConfig, ClusterStateReloadInterval: opt.StateReloadInterval, ContextTimeoutEnabled: true,
		})
	}
	return o.RedisConnOpt.MakeRedisClient()
}
