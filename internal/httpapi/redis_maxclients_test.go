package httpapi_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// TestRedisAtMaxclientsIs503: a Redis that has as many clients as its
// maxclients allows answers every new connection "ERR max number of
// clients reached" and closes it, while the connections it has go on: a
// refusal for now, as READONLY (once a client leaves, it takes new ones
// again). An enqueue that needs a new connection must answer 503 with
// Retry-After, not 500, and /readyz say Redis is unavailable. Here
// maxclients is 1 and every client but the test's own is killed, so that
// every command of the service needs a new connection. go-redis reads the
// refusal as a connection that ended (its first command, HELLO, is
// answered with the error, which it takes for a server without HELLO);
// the reply itself, from a client that passes it on, is a refusal for now
// too (TestDependencyUnavailable).
func TestRedisAtMaxclientsIs503(t *testing.T) {
	t.Parallel()
	t.Run("fair", func(t *testing.T) {
		t.Parallel()
		redisRefusingWrites(t, &fair.Config{MinPending: 1}, maxClients())
	})
	t.Run("asynq", func(t *testing.T) {
		t.Parallel()
		redisRefusingWrites(t, nil, maxClients())
	})
}

// maxClients makes a Redis refuse new connections (maxclients 1, every
// client but one connection of its own killed) and take them again,
// keeping that connection until then.
func maxClients() redisRefusal {
	var (
		admin *redis.Client
		conn  *redis.Conn
	)
	return redisRefusal{reply: "ERR max number of clients reached", newConnections: true,
		refuse: func(ctx context.Context, rdb *redis.Client) error {
			admin = redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
			conn = admin.Conn()
			if err := conn.ConfigSet(ctx, "maxclients", "1").Err(); err != nil {
				return err
			}
			for _, typ := range []string{"normal", "pubsub"} {
				if err := conn.ClientKillByFilter(ctx, "TYPE", typ, "SKIPME", "yes").Err(); err != nil {
					return err
				}
			}
			return nil
		},
		allow: func(ctx context.Context, _ *redis.Client) error {
			if admin == nil {
				return nil
			}
			err := conn.ConfigSet(ctx, "maxclients", "10000").Err()
			_ = conn.Close()
			_ = admin.Close()
			admin = nil
			return err
		}}
}
