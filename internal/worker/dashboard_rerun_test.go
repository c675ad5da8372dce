package worker_test

import (
	"context"
	"sync"
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

// TestDashboardArchivedPendingTaskRunAgainAsksTheGate: an operator
// archives an admitted, pending task from the dashboard (asynq keeps its
// message, the admission's run header included), the lease check frees
// its slot, the operator pauses the tenant's queue and then clicks "run
// now" on the archived task. The worker must ask the dispatcher (the run
// its message names is over) and park it while the tenant is paused, not
// run it as an admitted first attempt past the pause and the running cap.
func TestDashboardArchivedPendingTaskRunAgainAsksTheGate(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	rdb, catalog, d, enq := newFairRedis(t)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	tn := addTenant(t, catalog, "dash-archive", tenantctx.StatusActive)

	beat, stop := context.WithCancel(context.Background())
	var served sync.WaitGroup
	served.Go(func() {
		d.Serve(beat, fair.Membership{ID: "w", Queues: tasks.Queues, Concurrency: 2, Interval: 100 * time.Millisecond}, discardLogger())
	})
	t.Cleanup(func() { stop(); served.Wait() })
	stats := func() fair.QueueStats {
		s, err := d.Stats(ctx, tn.ID, tasks.QueueDefault)
		if err != nil {
			t.Fatal(err)
		}
		return s[0]
	}

	// No worker runs yet: the task is admitted and pending in asynq.
	res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Info.ID
	if err := ins.ArchiveTask(tasks.QueueDefault, id); err != nil { // the dashboard's "archive"
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the lease check frees the archived task's slot", func() bool { return stats().Admitted == 0 })

	if _, err := d.Hold(ctx, tn.ID, fair.Paused, tasks.WorkQueues...); err != nil { // the operator's queue/pause
		t.Fatal(err)
	}
	if err := ins.RunTask(tasks.QueueDefault, id); err != nil { // the dashboard's "run now"
		t.Fatal(err)
	}

	runs := startCountingWorker(t, rdb, d, catalog)

	testenv.WaitFor(t, 30*time.Second, "the task run or parked", func() bool {
		return runs.Load() > 0 || state(t, rdb, id) == "gone"
	})
	if n := runs.Load(); n != 0 {
		t.Fatalf("the task ran %d time(s) while its tenant's queue is paused (dispatcher: %+v); want it parked until the resume", n, stats())
	}
	if s := stats(); s.Parked != 1 {
		t.Fatalf("tenant's queue %+v, want the task parked", s)
	}
	if _, err := d.Release(ctx, tn.ID, fair.Paused, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the task runs after the resume", func() bool { return runs.Load() == 1 })
}

// TestDashboardArchivedPendingTaskRunAgainWhilePausedBeforeItsLeaseEnds:
// as above, but the operator pauses the tenant's queue and clicks "run
// now" before the lease check has met the archived task (its lease runs a
// minute here): the pause must blank the run its message names, as it
// does for a running task's, so that the worker asks the dispatcher, which
// parks it while the queue is paused, instead of running it as an admitted
// first attempt past the pause.
func TestDashboardArchivedPendingTaskRunAgainWhilePausedBeforeItsLeaseEnds(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	catalog := memstore.New()
	ins := asynq.NewInspectorFromRedisClient(rdb)
	d := fair.New(rdb, fair.Config{Lease: time.Minute})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), ins, discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}))
	tn := addTenant(t, catalog, "dash-archive-early", tenantctx.StatusActive)
	stats := func() fair.QueueStats {
		s, err := d.Stats(ctx, tn.ID, tasks.QueueDefault)
		if err != nil {
			t.Fatal(err)
		}
		return s[0]
	}

	// No worker runs yet: the task is admitted and pending in asynq.
	res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Info.ID
	if err := ins.ArchiveTask(tasks.QueueDefault, id); err != nil { // the dashboard's "archive"
		t.Fatal(err)
	}
	if _, err := d.Hold(ctx, tn.ID, fair.Paused, tasks.WorkQueues...); err != nil { // the operator's queue/pause
		t.Fatal(err)
	}
	if err := ins.RunTask(tasks.QueueDefault, id); err != nil { // the dashboard's "run now"
		t.Fatal(err)
	}

	runs := startCountingWorker(t, rdb, d, catalog)

	testenv.WaitFor(t, 30*time.Second, "the task run or parked", func() bool {
		return runs.Load() > 0 || state(t, rdb, id) == "gone"
	})
	if n := runs.Load(); n != 0 {
		t.Fatalf("the task ran %d time(s) while its tenant's queue is paused (dispatcher: %+v); want it parked until the resume", n, stats())
	}
	if s := stats(); s.Parked != 1 || s.Admitted != 0 {
		t.Fatalf("tenant's queue %+v, want the task parked and nothing admitted", s)
	}
}

// startCountingWorker starts an asynq server on rdb whose invoice:pdf
// handler counts its runs behind the production middleware (tenant look-up
// in catalog, d's gate and reports), stopped when the test ends; it
// returns the count.
func startCountingWorker(t *testing.T, rdb *redis.Client, d *fair.Dispatcher, catalog *memstore.Catalog) *atomic.Int64 {
	t.Helper()
	var runs atomic.Int64
	reporter := d.NewReporter(discardLogger())
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: reporter, Parker: d},
		map[string]asynq.Handler{tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			runs.Add(1)
			return nil
		})})
	srv := asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{Concurrency: 2, Logger: discardLogger(), ShutdownTimeout: 5 * time.Second}))
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		reporter.Close(context.Background())
	})
	return &runs
}
