// Package readiness runs a process's readiness checks for its /readyz
// route: every dependency's probe at once, each bounded by a deadline the
// probe cannot overrun.
package readiness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Check probes one dependency; nil means it answered.
type Check func(ctx context.Context) error

// Run runs checks concurrently, each under a deadline of timeout from ctx,
// and returns the error of each check that failed, by name (an empty map
// when all passed). Run returns within timeout even when a check ignores
// its context (go-redis without ContextTimeoutEnabled waits its read
// timeout, and retries, past the deadline): such a check fails with
// context.DeadlineExceeded and is left to finish on its own.
func Run(ctx context.Context, checks map[string]Check, timeout time.Duration) map[string]error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		failed = map[string]error{}
	)
	for name, check := range checks {
		wg.Go(func() {
			if err := bounded(ctx, check, timeout); err != nil {
				mu.Lock()
				failed[name] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed
}

// bounded returns check's error, or ctx's once ctx ends first.
func bounded(ctx context.Context, check Check, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- check(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %v: %w", timeout, ctx.Err())
	}
}

// Redis returns the check of rc: a PING of its server, or of every master
// of a Redis Cluster, and a write that Redis refuses as it refuses every
// write (writeProbe): a Redis that answers but takes no writes (a demoted
// master still reached, READONLY; at maxmemory with noeviction, OOM; a
// master whose min-replicas-to-write is not met, NOREPLICAS) fails every
// enqueue and every worker's dequeue, so it fails the check with its
// reply. A cluster client sends its own PING to one node and, when that
// node does not answer, retries it on another, so it passes while a
// master is down and the queues whose slots it holds are served by
// nobody.
func Redis(rc redis.UniversalClient) Check {
	return func(ctx context.Context) error {
		cc, ok := rc.(*redis.ClusterClient)
		if !ok {
			return redisServes(ctx, rc)
		}
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if err := redisServes(ctx, m); err != nil {
				return fmt.Errorf("cluster master %s: %w", m.Options().Addr, err)
			}
			return nil
		})
	}
}

// writeProbe is a script that writes nothing, but whose shebang declares
// no flags, so that Redis (7.0 and later) takes it for a write: it
// refuses it with READONLY, OOM or NOREPLICAS as it would refuse any
// write, before running it. It names no key, so it runs on any node of a
// cluster and needs no key an ACL user may not have. Redis before 7.0
// reads the shebang as Lua and refuses the script with ERR: such a Redis
// is checked by its PING only.
const writeProbe = "#!lua\nreturn 1"

// redisServes pings rc's server and checks that it takes writes
// (writeProbe).
func redisServes(ctx context.Context, rc redis.Cmdable) error {
	if err := rc.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	err := rc.Eval(ctx, writeProbe, nil).Err()
	// An ERR reply (the script refused as Lua: Redis before 7.0,
	// miniredis) says the server takes commands. Not redis.HasErrorPrefix,
	// which drops a leading "ERR " before it compares.
	var reply redis.Error
	if err == nil || errors.As(err, &reply) && strings.HasPrefix(reply.Error(), "ERR ") {
		return nil
	}
	return fmt.Errorf("redis takes no writes: %w", err)
}

// Postgres returns the check of pool's database. It pings on one of the
// pool's connections, unless every connection the pool may open is in use
// (requests waiting for a tenant's locked tables hold them all, up to
// their deadline): then it pings on a connection of its own, outside the
// pool, and closes it. Waiting for a pool connection would fail the check
// at its deadline while the database answers, and take every replica of a
// busy service out of its load balancer. At most one such connection is
// open at a time, however many probes of the returned check arrive:
// probes that come while one runs share its answer (they stop waiting at
// their own deadline), so requests to /readyz cannot open connections
// without bound, nor queue behind each other's. The bound is the check's:
// a process makes it once and runs it for every request.
func Postgres(pool *pgxpool.Pool) Check {
	var (
		mu  sync.Mutex
		cur *outsideCheck // the check outside the pool under way, if any
	)
	return func(ctx context.Context) error {
		if st := pool.Stat(); st.IdleConns() > 0 || st.TotalConns() < st.MaxConns() {
			return pool.Ping(ctx)
		}
		mu.Lock()
		if c := cur; c != nil {
			mu.Unlock()
			select {
			case <-c.done:
				return c.err
			case <-ctx.Done():
				return fmt.Errorf("wait for the check outside the busy pool: %w", ctx.Err())
			}
		}
		c := &outsideCheck{done: make(chan struct{})}
		cur = c
		mu.Unlock()
		c.err = pingOutside(ctx, pool)
		mu.Lock()
		cur = nil
		mu.Unlock()
		close(c.done)
		return c.err
	}
}

// outsideCheck is a ping outside the pool under way, whose answer the
// probes that arrive meanwhile share: err is set before done is closed.
type outsideCheck struct {
	done chan struct{}
	err  error
}

// pingOutside pings pool's database on a connection of its own, closed
// before it returns.
func pingOutside(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect outside the busy pool: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}
