package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// requeuedWhileHeld admits a render of an active tenant, has a first
// worker start it, holds the tenant with reason while it runs, and shuts
// that worker down so that asynq puts the render back into its pending
// list (its message still names its admission's run). It returns the
// rig, the id and a counter of the renders run by the first worker
// (handler entered) and by the second.
func requeuedWhileHeld(t *testing.T, slug string, reason fair.Reason) (*requeueRig, *atomic.Int64) {
	t.Helper()
	ctx := testContext(t)
	r := admittedRender(t, slug, fairLease)

	first := &atomic.Int64{}
	started := make(chan struct{}, 1)
	reporter := r.d.NewReporter(discardLogger())
	t.Cleanup(func() { reporter.Close(context.Background()) })
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: r.catalog, Reporter: reporter, Parker: r.d}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			first.Add(1)
			started <- struct{}{}
			<-ctx.Done() // a long render, cancelled by the shutdown
			return ctx.Err()
		}),
	})
	srv := startServer(t, r.redis, mux, worker.ServerOptions{Concurrency: 1, ShutdownTimeout: 200 * time.Millisecond})
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("the first worker did not start the render")
	}
	// The operator pauses the tenant (or a move holds it) while it runs.
	if _, err := r.d.Hold(ctx, r.tenant.ID, reason, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	testenv.WaitFor(t, time.Minute, "the shutdown to put the render back to pending", func() bool {
		return state(t, r.rdb, r.id) == "pending"
	})
	return r, first
}

// TestShutdownRequeuedTaskOfPausedTenantDoesNotRun: a held tenant's tasks
// never run. A render running when its tenant's queue is paused, whose
// worker is shut down, goes back to asynq's pending list with its run
// header; the worker that takes it must not run it while the tenant is
// held (its status stays active: a pause or a move is not a suspension).
func TestShutdownRequeuedTaskOfPausedTenantDoesNotRun(t *testing.T) {
	for _, c := range []struct {
		name   string
		reason fair.Reason
	}{{"paused", fair.Paused}, {"moving", fair.Moving}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			r, _ := requeuedWhileHeld(t, "rq-held-"+c.name, c.reason)
			r.startSecond(t)
			// Wait until the render ran, or asynq let it go (parked or moved back).
			testenv.WaitFor(t, time.Minute, "the requeued render to run or be held", func() bool {
				st := state(t, r.rdb, r.id)
				return r.runs.Load() > 0 || st == "gone"
			})
			time.Sleep(300 * time.Millisecond)
			if n := r.runs.Load(); n != 0 {
				t.Fatalf("the render ran %d times while its tenant was held (%s); stats %+v", n, c.name, r.stats(t))
			}
			// Released, it runs once.
			if _, err := r.d.Release(ctx, r.tenant.ID, c.reason, tasks.WorkQueues...); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, time.Minute, "the render to run after the release", func() bool {
				if err := r.d.Heartbeat(ctx, tasks.QueueDefault, "test-worker", 2, time.Minute); err != nil {
					t.Fatal(err)
				}
				s := r.stats(t)
				return r.runs.Load() >= 1 && s.Admitted == 0 && s.Parked == 0 && s.Waiting == 0
			})
			if n := r.runs.Load(); n != 1 {
				t.Fatalf("the render ran %d times, want once", n)
			}
		})
	}
}

// TestShutdownRequeuedTaskKeepsItsSlot: a tenant's running tasks never
// exceed max_running. A worker's shutdown that stops waiting for a handler
// puts its task back into asynq's pending list, message and run header
// unchanged, and another worker runs it under the same run. The first
// worker's handler still ends afterwards, and ReportCost reports that
// attempt under the run: the dispatcher ends the run the second worker is
// running, frees its slot and admits the tenant's next task, so two run
// at once under a cap of one.
func TestShutdownRequeuedTaskKeepsItsSlot(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	opt, rdb := newRedisClient(t)
	d := fair.New(rdb, fair.Config{Lease: 30 * time.Second})
	catalog := memstore.New()
	tn := addTenant(t, catalog, "rq-cap", tenantctx.StatusActive)
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}))
	if _, err := catalog.SetLimits(ctx, tn.ID, "", tenantctx.Limits{MaxRunning: 1}); err != nil {
		t.Fatal(err)
	}
	first, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}

	var running, most atomic.Int64
	enter := func() {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
	}
	// The first worker: its render does not stop at the shutdown's
	// cancellation right away (a CPU-bound render), it ends once let go.
	started1 := make(chan struct{}, 1)
	letGo := make(chan struct{})
	rep1 := d.NewReporter(discardLogger())
	t.Cleanup(func() { rep1.Close(context.Background()) })
	mux1 := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: rep1, Parker: d}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			enter()
			defer running.Add(-1)
			started1 <- struct{}{}
			<-letGo
			return nil
		}),
	})
	srv1 := startServer(t, opt, mux1, worker.ServerOptions{Concurrency: 1, ShutdownTimeout: 200 * time.Millisecond})
	select {
	case <-started1:
	case <-time.After(time.Minute):
		t.Fatal("the first worker did not start the render")
	}
	var letGoOnce atomic.Bool
	release := func() {
		if letGoOnce.CompareAndSwap(false, true) {
			close(letGo)
		}
	}
	t.Cleanup(release)
	if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 2}); err != nil {
		t.Fatal(err)
	}
	srv1.Shutdown()
	if st := state(t, rdb, first.Info.ID); st != "pending" {
		t.Fatalf("the first render is %s after the shutdown, want pending (requeued)", st)
	}

	// The second worker takes the requeued render and runs it.
	started2 := make(chan int, 2)
	hold2 := make(chan struct{})
	rep2 := d.NewReporter(discardLogger())
	t.Cleanup(func() { rep2.Close(context.Background()) })
	mux2 := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: rep2, Parker: d}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, p tasks.InvoicePDF) error {
			enter()
			defer running.Add(-1)
			started2 <- int(p.InvoiceID)
			<-hold2
			return nil
		}),
	})
	startServer(t, opt, mux2, worker.ServerOptions{Concurrency: 2})
	t.Cleanup(func() { close(hold2) })
	select {
	case id := <-started2:
		if id != 1 {
			t.Fatalf("the second worker started invoice %d first, want the requeued 1", id)
		}
	case <-time.After(time.Minute):
		t.Fatal("the second worker did not take the requeued render")
	}
	// The first worker's handler ends now; its report goes out.
	release()
	select {
	case id := <-started2:
		s, _ := d.Stats(ctx, tn.ID, tasks.QueueDefault)
		t.Fatalf("invoice %d started while the requeued render still runs: %d running at once under max_running 1; stats %+v", id, most.Load(), s[0])
	case <-time.After(2 * time.Second):
	}
}

// TestRecoveredTaskOfPausedTenantDoesNotRun: a held tenant's tasks never
// run. A worker killed (kill -9) while it ran an admitted render leaves it
// active in asynq; the dispatcher's lease check keeps its admission while
// asynq holds it active. The tenant's queue is paused meanwhile. asynq's
// recoverer then retries the render (as a retry, 1 s later): the worker
// that takes it asks the gate, which finds the admission still recorded
// and lets it run, held or not.
func TestRecoveredTaskOfPausedTenantDoesNotRun(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := admittedRender(t, "rq-recovered", 30*time.Second) // production's lease
	A := "asynq:{" + tasks.QueueDefault + "}:"
	// A worker dequeues it (asynq's dequeue script) and is killed.
	if err := r.rdb.LRem(ctx, A+"pending", 1, r.id).Err(); err != nil {
		t.Fatal(err)
	}
	r.rdb.LPush(ctx, A+"active", r.id)
	r.rdb.ZAdd(ctx, A+"lease", redis.Z{Score: float64(time.Now().Add(30 * time.Second).Unix()), Member: r.id})
	r.rdb.HSet(ctx, A+"t:"+r.id, "state", "active")
	// The operator pauses the tenant's queue.
	if _, err := r.d.Hold(ctx, r.tenant.ID, fair.Paused, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	// asynq's recoverer (a minute later) retries it: retry count + 1, into
	// the retry set, due at once (leaseExpiredDelay).
	msg, err := r.rdb.HGet(ctx, A+"t:"+r.id, "msg").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	msg = protowire.AppendVarint(protowire.AppendTag(msg, 6, protowire.VarintType), 1)
	r.rdb.LRem(ctx, A+"active", 1, r.id)
	r.rdb.ZRem(ctx, A+"lease", r.id)
	r.rdb.HSet(ctx, A+"t:"+r.id, "state", "retry", "msg", msg)
	r.rdb.ZAdd(ctx, A+"retry", redis.Z{Score: float64(time.Now().Unix() - 1), Member: r.id})

	r.startSecond(t)
	testenv.WaitFor(t, time.Minute, "the recovered render to run or be parked", func() bool {
		return r.runs.Load() > 0 || state(t, r.rdb, r.id) == "gone"
	})
	if n := r.runs.Load(); n != 0 {
		t.Fatalf("the recovered render ran %d times while its tenant was paused; stats %+v", n, r.stats(t))
	}
	if s := r.stats(t); s.Parked != 1 || s.Running != 0 {
		t.Fatalf("stats: %+v; want the render parked, nothing running", s)
	}
}
