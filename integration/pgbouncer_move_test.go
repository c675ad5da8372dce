package integration

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// TestMoveLockThroughPgBouncer: with DATABASE_URL on PgBouncer in
// transaction mode and MIGRATIONS_DATABASE_URL left to its default (so the
// schema pool, and the move lock's connection, go through PgBouncer too),
// a move of a tenant still runs alone: while it runs, the workers' check
// for the holds of killed moves (ReleaseStaleMoves, every 30 s) leaves its
// hold alone, and a second move of the tenant is refused. A session-level
// advisory lock taken through a transaction pooler stays on whichever
// server connection ran the statement, which PgBouncer hands to the next
// client: that client's pg_try_advisory_lock then succeeds (the lock is
// re-entrant in a session).
func TestMoveLockThroughPgBouncer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mainURL, secondURL := testenv.Postgres(t), testenv.Postgres(t)
	emptySearchPathDefault(t, mainURL)
	// Three server connections: the move's lock, its copy's transaction on
	// the source, and the catalog's switch.
	b := startPgBouncer(t, mainURL, 3)
	bouncerURL := b.url(databaseName(t, mainURL))

	// A process: its pool (DATABASE_URL, through PgBouncer), which is also
	// its schema pool (MIGRATIONS_DATABASE_URL unset).
	newService := func() (*tenancy.Service, *fair.Dispatcher, *tasks.Enqueuer, *storage.Postgres) {
		pool, err := schema.NewPool(ctx, bouncerURL, schema.PoolOptions{MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if err := storage.MigrateCatalog(ctx, pool, nil); err != nil {
			t.Fatal(err)
		}
		catalog := storage.NewPostgres(pool)
		docs, err := storage.NewFS(filepath.Join(t.TempDir(), "documents"))
		if err != nil {
			t.Fatal(err)
		}
		rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
		t.Cleanup(func() { _ = rdb.Close() })
		inspector := asynq.NewInspectorFromRedisClient(rdb)
		d := fair.New(rdb, fair.Config{MinPending: 1})
		enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), inspector, nil,
			tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}))
		pools := placement.New(placement.Options{MainPool: pool, URLs: map[string]string{"second": secondURL}, Catalog: catalog, MaxConns: 4})
		t.Cleanup(func() { _ = pools.Close() })
		if err := pools.Register(ctx); err != nil {
			t.Fatal(err)
		}
		svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
			Pools: pools, Dispatcher: d, Plans: fair.DefaultPlans()})
		return svc, d, enq, catalog
	}
	// The operator's `enqueue tenant move`, and a worker.
	mover, d, enq, catalog := newService()
	worker, _, _, _ := newService()

	// A tenant, provisioned and migrated (tenant:migrate) through PgBouncer.
	p, err := mover.Provision(ctx, tenancy.NewTenant{Slug: "acme", Database: "main"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mover.Migrate(ctx, p.Tenant, 0, tenancy.ActorWorker); err != nil {
		t.Fatalf("migrate through PgBouncer: %v", err)
	}
	id := p.Tenant.ID

	moving := func() bool {
		stats, err := d.Stats(ctx, id, enq.Layout().Queues()...)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range stats {
			if st.Moving {
				return true
			}
		}
		return false
	}
	// While the move runs (it has paused the queue and is about to copy),
	// the worker's check and a second move run.
	var checked bool
	progress := func(step string) {
		if checked || !strings.HasPrefix(step, "copy the schema") {
			return
		}
		checked = true
		if !moving() {
			t.Error("set-up: the move holds no hold on the queue")
		}
		released, err := worker.ReleaseStaleMoves(ctx)
		if err != nil || len(released) != 0 {
			t.Errorf("the workers' check during a live move through PgBouncer = %v, %v; want nothing released", released, err)
		}
		if !moving() {
			t.Error("the workers' check released the hold of a move that runs")
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := worker.Move(sctx, id, "second", "test", tenancy.MoveOptions{DrainTimeout: time.Second}); !errors.Is(err, tenancy.ErrMoveRefused) {
			t.Errorf("a second move of the tenant while one runs through PgBouncer: %v, want ErrMoveRefused", err)
		}
	}
	if _, err := mover.Move(ctx, id, "second", "test", tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 5 * time.Second,
		Poll: 10 * time.Millisecond, Progress: progress}); err != nil {
		t.Fatalf("move through PgBouncer: %v", err)
	}
	if !checked {
		t.Fatal("set-up: the move never reached its copy")
	}
	if tn, err := catalog.TenantByID(ctx, id); err != nil || tn.Database != "second" {
		t.Fatalf("after the move: %+v, %v; want the tenant on second", tn, err)
	}
	if moving() {
		t.Error("the move's hold stayed after the move")
	}

	// The lock went with the move: the next move (back) takes it.
	if _, err := worker.Move(ctx, id, "main", "test", tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 5 * time.Second,
		Poll: 10 * time.Millisecond}); err != nil {
		t.Fatalf("the next move through PgBouncer: %v", err)
	}
}
