package config

import (
	"crypto/tls"
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
// RedisTLSClusterScheme is its TLS form.
const RedisClusterScheme = "redis-cluster"

// RedisTLSClusterScheme is RedisClusterScheme over TLS, with the same
// grammar and checks:
//
//	rediss-cluster://[user:password@]host1:port,host2:port,...
//
// Every node, the seeds and those the slot map names, is dialled with TLS
// (RedisTLSConfig): its certificate must be valid for the host the client
// dials, the seed's host as written, or the address the cluster
// advertises for the node (its IP, unless the nodes announce a hostname:
// cluster-announce-hostname with cluster-preferred-endpoint-type
// hostname).
const RedisTLSClusterScheme = "rediss-cluster"

// RedisSentinelScheme is the REDIS_URL scheme of a master found through
// Redis Sentinel, after go-redis's ParseFailoverURL:
//
//	redis-sentinel://[user:password@]host1:port,host2:port[/db]?master=name[&username=user][&password=password][&db=N]
//
// The userinfo authenticates to the Sentinels; the username and password
// parameters to the master and its replicas; db (or the /db path) selects
// the database; master is the name the Sentinels monitor (required). All
// are percent-decoded; any other parameter or a fragment is refused.
// RedisTLSSentinelScheme is its TLS form. asynq's own ParseRedisURI gives
// the userinfo password to the Sentinels alone, so a master with a
// password is unreachable, and ignores the path.
const RedisSentinelScheme = "redis-sentinel"

// RedisTLSSentinelScheme is RedisSentinelScheme over TLS, with the same
// grammar and checks:
//
//	rediss-sentinel://[user:password@]host1:port,host2:port[/db]?master=name[&username=user][&password=password][&db=N]
//
// TLS (RedisTLSConfig) is used to the Sentinels and to the master and its
// replicas alike: each certificate must be valid for the host the client
// dials, a Sentinel's host as written, or the master's address as the
// Sentinels report it (an IP, unless they announce hostnames:
// resolve-hostnames and announce-hostnames).
const RedisTLSSentinelScheme = "rediss-sentinel"

// RedisTLSConfig returns the TLS configuration of a rediss-cluster:// or
// rediss-sentinel:// URL: TLS 1.2 or later, the server's certificate
// verified against the system's CAs (SSL_CERT_FILE or SSL_CERT_DIR name a
// private CA). ServerName is left empty: crypto/tls then verifies each
// connection against the host it dials, which go-redis v9 passes as it is
// for every cluster node, Sentinel, master and replica (tls.DialWithDialer
// with the node's address), so one configuration serves servers with
// certificates of their own.
func RedisTLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12}
}

// ParseRedisURL parses a REDIS_URL: redis-cluster:// (RedisClusterScheme)
// and rediss-cluster:// (RedisTLSClusterScheme) into RedisClusterOpt,
// redis-sentinel:// (RedisSentinelScheme) and rediss-sentinel://
// (RedisTLSSentinelScheme) into asynq.RedisFailoverClientOpt, everything
// else with asynq.ParseRedisURI (redis://, rediss://, redis-socket://),
// whose redis[s]://user:password@... user (a Redis ACL user) is kept.
func ParseRedisURL(raw string) (asynq.RedisConnOpt, error) {
	for _, scheme := range []string{RedisClusterScheme, RedisTLSClusterScheme} {
		if rest, ok := strings.CutPrefix(raw, scheme+"://"); ok {
			return parseRedisClusterURL(scheme, rest)
		}
	}
	// asynq passes url.Parse's error on, which quotes the whole URL,
	// password included: parse it first and keep only the reason.
	u, err := url.Parse(raw)
	if err != nil {
		// Nor its reason, with user information: an unencoded '/',
		// '?' or '#' ends the password early, and the reason quotes
		// the rest of the authority ("invalid port \":s3cr\"").
		// Nor with a query, which may hold a password parameter (the
		// Sentinel forms'): an unencoded '#' there puts the rest of it
		// into the fragment, whose bad escape the reason quotes
		// ("invalid URL escape \"%K9\"").
		if strings.ContainsAny(raw, "@?") {
			return nil, errors.New("could not parse redis uri: not a URL (percent-encode '/', '?', '#', '%' and '@' in the user and password, and '#', '%' and '&' in a password parameter)")
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("could not parse redis uri: %w", err)
	}
	if u.Scheme == RedisSentinelScheme || u.Scheme == RedisTLSSentinelScheme {
		return parseRedisSentinelURL(u)
	}
	if err := checkRedisURLRest(u); err != nil {
		return nil, err
	}
	if u.User != nil {
		if pw, _ := u.User.Password(); u.User.Username() != "" && pw == "" {
			return nil, errUserWithoutPassword("could not parse redis uri", "redis[s]://")
		}
	}
	if (u.Scheme == "redis" || u.Scheme == "rediss") && u.Path == "/" && strings.HasSuffix(raw, "/") {
		// A path of "/" alone names no database (0, as go-redis reads
		// it); asynq refuses it for rediss://.
		raw = strings.TrimSuffix(raw, "/")
	}
	opt, err := asynq.ParseRedisURI(raw)
	if err != nil {
		return nil, err
	}
	if o, ok := opt.(asynq.RedisClientOpt); ok {
		// asynq keeps a negative database, and go-redis selects one
		// only above 0: redis://host:6379/-1 would run on database 0.
		if o.DB < 0 {
			return nil, fmt.Errorf("could not parse redis uri: database: want a number from 0, got %d", o.DB)
		}
		// asynq keeps the password and drops the user: with Redis ACLs
		// (redis://app:secret@host) the client would log in as the
		// default user, or be refused.
		if u.User != nil {
			o.Username = u.User.Username()
		}
		opt = o
	}
	return opt, nil
}

// parseRedisClusterURL parses what follows "scheme://" of a
// redis-cluster:// or rediss-cluster:// URL. Its errors never quote a
// password.
func parseRedisClusterURL(scheme, rest string) (asynq.RedisConnOpt, error) {
	if strings.ContainsAny(rest, "/?#") {
		return nil, fmt.Errorf("%s: a path, query or fragment is not supported: use %s://[user:password@]host:port,host:port,...", scheme, scheme)
	}
	var opt asynq.RedisClusterClientOpt
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		userinfo := rest[:i]
		rest = rest[i+1:]
		user, password, hasPassword := strings.Cut(userinfo, ":")
		var err error
		if opt.Username, err = url.PathUnescape(user); err != nil {
			return nil, fmt.Errorf("%s: user: %w", scheme, err)
		}
		if hasPassword {
			if opt.Password, err = url.PathUnescape(password); err != nil {
				// The error would quote the password.
				return nil, fmt.Errorf("%s: password: invalid percent-encoding", scheme)
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
			return nil, fmt.Errorf("%s: node %q: %w", scheme, a, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 || host == "" {
			return nil, fmt.Errorf("%s: node %q: want host:port", scheme, a)
		}
		opt.Addrs = append(opt.Addrs, net.JoinHostPort(host, port))
	}
	if len(opt.Addrs) == 0 {
		return nil, fmt.Errorf("%s: no node: use %s://host:port,host:port,...", scheme, scheme)
	}
	if opt.Username != "" && opt.Password == "" {
		return nil, errUserWithoutPassword(scheme, scheme+"://")
	}
	if scheme == RedisTLSClusterScheme {
		opt.TLSConfig = RedisTLSConfig()
	}
	return RedisClusterOpt{RedisClusterClientOpt: opt, StateReloadInterval: DefaultClusterStateReloadInterval}, nil
}

// errUserWithoutPassword is the error of a URL whose user information
// has a user and no password: go-redis logs in only with a password, so
// the client would run as Redis's default user, or be refused (NOAUTH)
// when what stands before '@' is a password written without its ':'.
// Neither is quoted.
func errUserWithoutPassword(prefix, form string) error {
	return fmt.Errorf("%s: a user without a password: Redis logs in only with a password, and the client would run as the default user; write %s:password@host for a password alone, %suser:password@host for an ACL user (percent-encoded)", prefix, form, form)
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
			return errors.New("could not parse redis uri: query parameters are not supported: use redis[s]://[[user]:password@]host:port[/db] (percent-encode '?' in the user and password)")
		}
		if strings.Contains(strings.Trim(u.Path, "/"), "/") {
			return errors.New("could not parse redis uri: want only the database number as the path: redis[s]://[[user]:password@]host:port[/db]")
		}
		// asynq dials the authority as it is, and go-redis dials the
		// local host for an empty host (redis://:6379, a host variable
		// left unset): the wrong Redis, without a word. Neither host nor
		// port is quoted (an unencoded '/' in the password puts part of
		// it there).
		if n, err := strconv.Atoi(u.Port()); u.Hostname() == "" || err != nil || n <= 0 || n > 65535 {
			return errors.New("could not parse redis uri: want host:port, a host and a port from 1 to 65535: redis[s]://[[user]:password@]host:port[/db] (percent-encode '/', '?', '#' and '@' in the user and password)")
		}
	case "redis-socket":
		if u.Host != "" {
			// asynq ignores it and takes the path for the socket's: with
			// an unencoded '/' in the password, the rest of the password
			// (which the dial error would then quote).
			return errors.New("could not parse redis socket uri: a host is not supported: want redis-socket://[:password@]path[?db=N] (percent-encode '/', '?', '#' and '@' in the password)")
		}
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

// parseRedisSentinelURL parses a redis-sentinel:// or rediss-sentinel://
// URL (RedisSentinelScheme, RedisTLSSentinelScheme). Its errors never quote
// a password.
func parseRedisSentinelURL(u *url.URL) (asynq.RedisConnOpt, error) {
	scheme := u.Scheme
	usage := "use " + scheme + "://[user:password@]host:port,host:port[/db]?master=name[&username=user][&password=password][&db=N]"
	var opt asynq.RedisFailoverClientOpt
	if scheme == RedisTLSSentinelScheme {
		opt.TLSConfig = RedisTLSConfig()
	}
	if u.User != nil {
		opt.SentinelUsername = u.User.Username()
		opt.SentinelPassword, _ = u.User.Password()
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("%s: a fragment is not supported (percent-encode # as %%23): %s", scheme, usage)
	}
	addrs := strings.Split(u.Host, ",")
	for i, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n <= 0 || n > 65535 || host == "" {
			// Not quoted: an unencoded '/' or '?' in the password ends
			// the authority there, and a password's digits before it
			// are taken for a Sentinel's port (":98765432").
			return nil, fmt.Errorf("%s: sentinel %d of %d: want host:port (percent-encode '/', '?', '#' and '@' in the user and password): %s", scheme, i+1, len(addrs), usage)
		}
		opt.SentinelAddrs = append(opt.SentinelAddrs, a)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// The error would quote the query, password included.
		return nil, fmt.Errorf("%s: query: invalid percent-encoding", scheme)
	}
	db := strings.Trim(u.Path, "/")
	for k, v := range q {
		if len(v) != 1 {
			return nil, fmt.Errorf("%s: query parameter %q given %d times", scheme, k, len(v))
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
				return nil, fmt.Errorf("%s: the path and the db parameter name different databases", scheme)
			}
			db = v[0]
		default:
			if q.Has("password") {
				// An unencoded '&' in the password makes its rest a
				// parameter of its own: the name is not quoted.
				return nil, fmt.Errorf("%s: unknown query parameter: want master, username, password or db (percent-encode '&' in a password as %%26)", scheme)
			}
			return nil, fmt.Errorf("%s: unknown query parameter %.40q: want master, username, password or db", scheme, k)
		}
	}
	if opt.MasterName == "" {
		return nil, fmt.Errorf("%s: master: required (the name the Sentinels monitor): %s", scheme, usage)
	}
	if opt.SentinelUsername != "" && opt.SentinelPassword == "" {
		return nil, errUserWithoutPassword(scheme+": the Sentinels' user", scheme+"://")
	}
	if opt.Username != "" && opt.Password == "" {
		return nil, fmt.Errorf("%s: the username parameter without a password parameter: Redis logs in only with a password, and the client would run as the default user", scheme)
	}
	if db != "" {
		if opt.DB, err = strconv.Atoi(db); err != nil || opt.DB < 0 {
			// Not quoted: the path may be the rest of a password whose
			// '/' was not percent-encoded.
			return nil, fmt.Errorf("%s: database: want a number from 0 (percent-encode '/' in the user and password): %s", scheme, usage)
		}
	}
	return opt, nil
}

// DefaultClusterStateReloadInterval is RedisClusterOpt.StateReloadInterval
// of a parsed redis-cluster:// or rediss-cluster:// URL.
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
// (redis-sentinel://, rediss-sentinel://): its clients dial whichever server the Sentinels
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

// RedisUsesTLS reports whether opt's clients dial with TLS: a rediss://,
// rediss-cluster:// or rediss-sentinel:// URL.
func RedisUsesTLS(opt asynq.RedisConnOpt) bool {
	if o, ok := opt.(contextTimeoutOpt); ok {
		opt = o.RedisConnOpt
	}
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		return o.TLSConfig != nil
	case asynq.RedisFailoverClientOpt:
		return o.TLSConfig != nil
	case asynq.RedisClusterClientOpt:
		return o.TLSConfig != nil
	case RedisClusterOpt:
		return o.TLSConfig != nil
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
