package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// slowParker parks through the dispatcher, then keeps the worker from
// returning until unblock is closed: the worker sits between parking a
// task and handing it back when its server's shutdown stops waiting. It
// first holds the tenant as suspended: the suspension's second step (the
// hold) lands while the worker, which dequeued the task before it, looks
// the tenant up.
type slowParker struct {
	d       *fair.Dispatcher
	parked  chan string
	unblock chan struct{}
}

func (p *slowParker) ParkRun(ctx context.Context, queue, taskID, tenantID, typ, run string) (bool, error) {
	if _, err := p.d.Hold(ctx, tenantID, fair.Suspended, queue); err != nil {
		return false, err
	}
	ok, err := p.d.ParkRun(ctx, queue, taskID, tenantID, typ, run)
	p.parked <- taskID
	<-p.unblock
	return ok, err
}

func (p *slowParker) GateRun(ctx context.Context, queue, taskID, tenantID, typ string) (bool, string, error) {
	return p.d.GateRun(ctx, queue, taskID, tenantID, typ)
}

// requeueRig is a tenant's render admitted by the dispatcher, a worker
// that parks it and is shut down before handing it back, and a second
// worker started afterwards on the same Redis.
type requeueRig struct {
	redis   asynq.RedisClientOpt
	rdb     *redis.Client
	d       *fair.Dispatcher
	catalog *memstore.Catalog
	tenant  tenantctx.Tenant
	id      string
	runs    atomic.Int64
}

// admittedRender starts a redis-server, a dispatcher with lease and an
// in-memory catalog holding an active tenant slug, and admits one render
// of that tenant through the Enqueuer's fair admission: the rig names it.
func admittedRender(t *testing.T, slug string, lease time.Duration) *requeueRig {
	t.Helper()
	r := &requeueRig{redis: newRedis(t), catalog: memstore.New()}
	r.rdb = redis.NewClient(&redis.Options{Addr: r.redis.Addr})
	t.Cleanup(func() { _ = r.rdb.Close() })
	r.d = fair.New(r.rdb, fair.Config{Lease: lease})
	r.tenant = addTenant(t, r.catalog, slug, tenantctx.StatusActive)
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(r.rdb), asynq.NewInspectorFromRedisClient(r.rdb), discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: r.d, Tenants: r.catalog}))
	res, err := enq.Enqueue(testContext(t), tasks.InvoicePDF{TenantID: r.tenant.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	r.id = res.Info.ID
	return r
}

// parkedThenRequeued admits a render of a new tenant, suspends the tenant
// in the catalog and starts a worker that dequeues the render, parks it
// (the dispatcher holds the tenant by then and keeps the message) and
// stays in its handler until the worker's server shutdown has given up on
// it: asynq puts the task back into its pending list (its Requeue), and
// the hand-back the handler returns afterwards (asynq.RevokeTask) never
// reaches asynq. during, when set, runs while the worker is still in the
// handler, the task parked (asynq holds it as active).
func parkedThenRequeued(t *testing.T, slug string, during func(r *requeueRig)) *requeueRig {
	t.Helper()
	ctx := testContext(t)
	r := admittedRender(t, slug, fairLease)
	if st := state(t, r.rdb, r.id); st != "pending" {
		t.Fatalf("the render is %s in asynq, want pending (admitted)", st)
	}
	if _, err := r.catalog.SetStatus(ctx, r.tenant.ID, tenantctx.StatusSuspended); err != nil {
		t.Fatal(err)
	}

	p := &slowParker{d: r.d, parked: make(chan string, 1), unblock: make(chan struct{})}
	var unblocked atomic.Bool
	unblock := func() {
		if unblocked.CompareAndSwap(false, true) {
			close(p.unblock)
		}
	}
	t.Cleanup(unblock) // should the test stop early
	reporter := r.d.NewReporter(discardLogger())
	t.Cleanup(func() { reporter.Close(context.Background()) })
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: r.catalog, Reporter: reporter, Parker: p}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			r.runs.Add(1)
			return nil
		}),
	})
	srv := startServer(t, r.redis, mux, worker.ServerOptions{Concurrency: 1, ShutdownTimeout: 200 * time.Millisecond})
	select {
	case id := <-p.parked:
		if id != r.id {
			t.Fatalf("parked %s, want %s", id, r.id)
		}
	case <-time.After(time.Minute): // a bound for the failure message, not a measurement
		t.Fatal("the worker did not park the suspended tenant's render")
	}
	if during != nil {
		during(r)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		srv.Shutdown()
	}()
	testenv.WaitFor(t, time.Minute, "the shutdown to put the parked render back to pending", func() bool {
		return state(t, r.rdb, r.id) == "pending"
	})
	unblock()
	<-stopped
	if n := r.runs.Load(); n != 0 {
		t.Fatalf("the render ran %d times on the first worker", n)
	}
	return r
}

// startSecond starts the second worker: the production chain with the
// dispatcher as its parker, counting the renders that run.
func (r *requeueRig) startSecond(t *testing.T) {
	t.Helper()
	reporter := r.d.NewReporter(discardLogger())
	t.Cleanup(func() { reporter.Close(context.Background()) })
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: r.catalog, Reporter: reporter, Parker: r.d}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			r.runs.Add(1)
			return nil
		}),
	})
	startServer(t, r.redis, mux, worker.ServerOptions{Concurrency: 2})
}

func (r *requeueRig) stats(t *testing.T) fair.QueueStats {
	t.Helper()
	s, err := r.d.Stats(context.Background(), r.tenant.ID, tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	return s[0]
}

// TestShutdownRequeuedParkedTaskRunsOnce: a worker's shutdown that gives
// up on a handler after it parked its task puts the task back into
// asynq's pending list, with the admission's message, while the
// dispatcher keeps it parked. A worker that takes it runs a first attempt
// without asking the dispatcher: it ran although its tenant was held, and
// ran again once the hold was released from the parked record. The
// parked message now names no run, so the worker asks the gate: held, it
// is parked again; it runs once, after the release.
func TestShutdownRequeuedParkedTaskRunsOnce(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := parkedThenRequeued(t, "requeue-once", nil)
	if s := r.stats(t); s.Parked != 1 {
		t.Fatalf("stats after the shutdown: %+v; want the render parked", s)
	}
	// The tenant's queue is paused too; its suspension then ends: the
	// catalog says active, the dispatcher still holds it (paused).
	if _, err := r.d.Hold(ctx, r.tenant.ID, fair.Paused, tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	if _, err := r.catalog.SetStatus(ctx, r.tenant.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.Release(ctx, r.tenant.ID, fair.Suspended, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	r.startSecond(t)
	testenv.WaitFor(t, time.Minute, "the requeued render parked again (or run)", func() bool {
		return r.runs.Load() > 0 || handedBack(t, r.rdb, r.d, r.tenant.ID, r.id)
	})
	if n := r.runs.Load(); n != 0 {
		t.Fatalf("the render ran %d times while its tenant was paused", n)
	}

	if _, err := r.d.Release(ctx, r.tenant.ID, fair.Paused, tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the render runs after the release and is reported", func() bool {
		// The parked task comes back at a heartbeat once its hand-back can
		// no longer arrive (one and a half leases after its park).
		if err := r.d.Heartbeat(ctx, tasks.QueueDefault, "test-worker", 2, time.Minute); err != nil {
			t.Fatal(err)
		}
		s := r.stats(t)
		return r.runs.Load() >= 1 && s.Admitted == 0 && s.Parked == 0 && s.Waiting == 0
	})
	// Later heartbeats have nothing to bring back.
	for range 3 {
		if err := r.d.Heartbeat(ctx, tasks.QueueDefault, "test-worker", 2, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, time.Minute, "asynq's lists of the queue to be empty", func() bool {
		info, err := asynq.NewInspectorFromRedisClient(r.rdb).GetQueueInfo(tasks.QueueDefault)
		return err == nil && info.Pending == 0 && info.Active == 0
	})
	if n := r.runs.Load(); n != 1 {
		t.Fatalf("the render ran %d times, want once", n)
	}
}

// TestDrainedTaskRequeuedByShutdownNeverRuns: a drain while a worker is
// handing a parked task back discards it and counts it. If the worker's
// shutdown then gives up on the handler, asynq puts the task back into its
// pending list instead of letting it go; the worker that takes it, its
// tenant running again, must hand it back unrun: the drain said it was
// discarded.
func TestDrainedTaskRequeuedByShutdownNeverRuns(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	var n fair.Drained
	r := parkedThenRequeued(t, "requeue-drained", func(r *requeueRig) {
		var err error
		if n, err = r.d.Drain(ctx, r.tenant.ID, tasks.WorkQueues...); err != nil {
			t.Fatal(err)
		}
	})
	if n.Parked != 1 || n.Total() != 1 {
		t.Fatalf("Drain = %+v; want the render being handed back discarded and counted", n)
	}

	// The tenant resumes.
	if _, err := r.catalog.SetStatus(ctx, r.tenant.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.Release(ctx, r.tenant.ID, fair.Suspended, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	r.startSecond(t)
	testenv.WaitFor(t, time.Minute, "the drained render handed back (or run)", func() bool {
		return r.runs.Load() > 0 || state(t, r.rdb, r.id) != "pending" && state(t, r.rdb, r.id) != "active"
	})
	if n := r.runs.Load(); n != 0 {
		t.Fatalf("the drained render ran %d times", n)
	}
	if st := state(t, r.rdb, r.id); st != "gone" {
		t.Fatalf("the drained render is %s in asynq, want gone", st)
	}
	if s := r.stats(t); s.Admitted != 0 || s.Parked != 0 || s.Waiting != 0 {
		t.Fatalf("stats after the hand-back: %+v; want nothing of the drained render", s)
	}
}
