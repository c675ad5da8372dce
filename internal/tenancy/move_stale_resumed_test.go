package tenancy_test

import (
	"errors"
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
)

// TestStaleMoveCheckKeepsAnOperatorsResume: a move whose switch was not
// propagated (Redis went away) tells the operator to resume the queue once
// Redis works. An operator who does so before a worker's stale-move check
// ran (Redis back for less than 30 s, or no worker running) gets a
// successful resume; the check must not pause the queue again afterwards.
func TestStaleMoveCheckKeepsAnOperatorsResume(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")

	var down atomic.Bool
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t), MaxRetries: -1})
	rdb.AddHook(failingRedis{&down})
	t.Cleanup(func() { _ = rdb.Close() })
	d := fair.New(rdb, fair.Config{MinPending: 1})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), nil,
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: b.catalog}))
	svc := tenancy.New(tenancy.Config{Catalog: redisDownAfterSwitch{b.catalog, &down}, Enqueuer: enq, Documents: b.docs,
		SchemaPool: b.pool, Pools: b.pools, Dispatcher: d, Plans: fair.DefaultPlans()})

	_, err := svc.Move(b.ctx, acme.ID, "second", "test", tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 300 * time.Millisecond, Poll: 10 * time.Millisecond})
	if !errors.Is(err, storage.ErrInvalidationFailed) {
		t.Fatalf("Move with Redis gone after the switch: %v, want ErrInvalidationFailed", err)
	}
	down.Store(false) // Redis is back
	// The operator follows the move's advice and resumes the queue.
	if err := svc.ResumeQueue(b.ctx, acme.ID, "operator"); err != nil {
		t.Fatal(err)
	}
	// A worker's check runs afterwards.
	if _, err := svc.ReleaseStaleMoves(b.ctx); err != nil {
		t.Fatal(err)
	}
	q, err := svc.Queue(b.ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	if inDefault(t, q).Paused {
		t.Errorf("the operator resumed the queue (successfully) after the move, then the stale-move check paused it again: %+v", inDefault(t, q))
	}
}
