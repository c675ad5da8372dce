package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// failingRedis fails every command while down is set, as an unreachable
// Redis does.
type failingRedis struct{ down *atomic.Bool }

func (h failingRedis) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h failingRedis) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.down.Load() {
			err := errors.New("dial tcp: connection refused (injected)")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h failingRedis) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.down.Load() {
			return errors.New("dial tcp: connection refused (injected)")
		}
		return next(ctx, cmds)
	}
}

// redisDownAfterSwitch is a catalog whose placement change is saved, but
// whose cache invalidation cannot be published because Redis went away
// right after the switch (down is set from then on).
type redisDownAfterSwitch struct {
	storage.Catalog
	down *atomic.Bool
}

func (c redisDownAfterSwitch) SetPlacement(ctx context.Context, id, from, to string, generation int64) (tenantctx.Tenant, error) {
	t, err := c.Catalog.SetPlacement(ctx, id, from, to, generation)
	if err != nil {
		return t, err
	}
	c.down.Store(true)
	return t, fmt.Errorf("%w: injected: redis unreachable", storage.ErrInvalidationFailed)
}

// TestStaleMoveCheckKeepsANotPropagatedMovePaused: a move whose switch
// could not be published because Redis was unreachable says "its queue
// stays paused": other processes may still place the tenant on the old
// database (whose schema is kept) until the tenant cache's Redis TTL. Redis
// being unreachable, the move's hand-over to an operator's pause fails too,
// and only the move's own hold keeps the queue held. Once Redis is back,
// the workers' stale-move check must not resume that queue: it hands it
// over to an operator's pause, as the move meant to.
func TestStaleMoveCheckKeepsANotPropagatedMovePaused(t *testing.T) {
	t.Parallel()
	b, acme, svc, down := notPropagatedMove(t)
	_, err := svc.Move(b.ctx, acme.ID, "second", "test", tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 300 * time.Millisecond, Poll: 10 * time.Millisecond})
	if !errors.Is(err, storage.ErrInvalidationFailed) || !strings.Contains(err.Error(), "queue stays paused") {
		t.Fatalf("Move with Redis gone after the switch: %v, want ErrInvalidationFailed saying the queue stays paused", err)
	}
	down.Store(false) // Redis is back
	q, err := svc.Queue(b.ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !inDefault(t, q).Paused {
		t.Fatalf("set-up: the queue after the move: %+v, want held", inDefault(t, q))
	}

	// A worker's check, within 30 s of Redis being back.
	released, err := svc.ReleaseStaleMoves(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	q, err = svc.Queue(b.ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !inDefault(t, q).Paused {
		t.Errorf("the stale-move check (released %v) resumed the queue of a move whose switch was not propagated: %+v; "+
			"its tasks may run against the old database", released, inDefault(t, q))
	}
	// The hand-over is in the audit log, by the workers' check.
	entries, err := b.catalog.AuditEntries(b.ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	if last := entries[len(entries)-1]; last.Action != string(tenancy.ActionQueuePaused) || last.Actor != tenancy.ActorWorker || !keptAfterMove(last) {
		t.Errorf("the audit log ends in %s by %s %s, want the pause kept after the move, by the worker", last.Action, last.Actor, last.Detail)
	}
}

// notPropagatedMove sets up a tenant acme on "main" of two servers and a
// service whose Redis becomes unreachable (down) right after a move's
// switch is saved, so the switch cannot be propagated.
func notPropagatedMove(t *testing.T) (*twoServers, tenantctx.Tenant, *tenancy.Service, *atomic.Bool) {
	t.Helper()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	down := new(atomic.Bool)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t), MaxRetries: -1})
	rdb.AddHook(failingRedis{down})
	t.Cleanup(func() { _ = rdb.Close() })
	d := fair.New(rdb, fair.Config{MinPending: 1})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), nil,
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: b.catalog}))
	svc := tenancy.New(tenancy.Config{Catalog: redisDownAfterSwitch{b.catalog, down}, Enqueuer: enq, Documents: b.docs,
		SchemaPool: b.pool, Pools: b.pools, Dispatcher: d, Plans: fair.DefaultPlans()})
	return b, acme, svc, down
}
