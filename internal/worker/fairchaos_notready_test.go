package worker_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestNotReadyRetryStaysUnderTheRunningCap: a tenant's admitted tasks that
// workers met while it was suspended but not held by the dispatcher (the
// README's "if the hold then fails (Redis unreachable) ... its tasks wait
// the old way (retried every 15-30 s)", or the moment between the status
// change and the hold) are retried by asynq without counting a failure:
// their retry count stays 0 and their message still names the admission's
// run, whose slot the not-ready attempt's report freed. Once the tenant is
// active again they must still run under its running cap, across several
// workers.
func TestNotReadyRetryStaysUnderTheRunningCap(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	plans := fair.DefaultPlans()
	plans["pro"] = fair.Policy{Weight: 1, MaxRunning: 1, MaxWaiting: 1000}
	rdb, catalog, d, enq := newFairRedisPlans(t, plans)
	tn := addTenant(t, catalog, "notready-cap", tenantctx.StatusActive)
	const n = 6
	ids := make([]string, 0, n)
	for i := range n {
		res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: int64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Info.ID)
	}
	// Suspended in the catalog; the dispatcher's hold did not follow.
	if _, err := catalog.SetStatus(ctx, tn.ID, tenantctx.StatusSuspended); err != nil {
		t.Fatal(err)
	}

	var seen sync.Map // task ids reported (met by a worker)
	var running, most, ran atomic.Int64
	var active atomic.Bool
	handler := worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
		now := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if now <= m || most.CompareAndSwap(m, now) {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
		ran.Add(1)
		return nil
	})
	beat, stop := context.WithCancel(context.Background())
	var served sync.WaitGroup
	// Two workers on one Redis, as in production: each with its heartbeat,
	// its reporter and the production chain.
	for i := range 2 {
		served.Go(func() {
			d.Serve(beat, fair.Membership{ID: "w" + string(rune('a'+i)), Queues: tasks.Queues, Concurrency: 4, Interval: 100 * time.Millisecond}, discardLogger())
		})
		reporter := d.NewReporter(discardLogger())
		mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: &seenReporter{r: reporter, seen: &seen}, Parker: d},
			map[string]asynq.Handler{tasks.TypeInvoicePDF: handler})
		srv := asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{Concurrency: 4, Logger: discardLogger(),
			ShutdownTimeout: 5 * time.Second, NotReadyDelayMin: 300 * time.Millisecond, NotReadyDelayMax: 400 * time.Millisecond,
			DelayedTaskCheckInterval: 100 * time.Millisecond}))
		if err := srv.Start(mux); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			srv.Shutdown()
			reporter.Close(context.Background())
		})
	}
	t.Cleanup(func() { stop(); served.Wait() })

	// Every task was met while the tenant was suspended (admission went
	// on as the not-ready attempts' reports freed the slot): they wait in
	// asynq's retry set.
	testenv.WaitFor(t, time.Minute, "every task met once while suspended", func() bool {
		if active.Load() {
			return true
		}
		for _, id := range ids {
			if _, ok := seen.Load(id); !ok {
				return false
			}
		}
		return true
	})
	if _, err := catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	active.Store(true)
	if _, err := d.Release(ctx, tn.ID, fair.Suspended, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "every task ran", func() bool { return ran.Load() >= n })
	if m := most.Load(); m > 1 {
		t.Fatalf("%d of the tenant's tasks ran at once, want at most its max_running of 1", m)
	}
}

// seenReporter notes the task ids it reports, then reports them to r.
type seenReporter struct {
	r    worker.CostReporter
	seen *sync.Map
}

func (s *seenReporter) Report(rep fair.Report) {
	s.seen.Store(rep.TaskID, true)
	s.r.Report(rep)
}

// TestArchivedTaskRunAgainStaysUnderTheRunningCap: a render archived on its
// first attempt (asynq.SkipRetry: retry count 0) and run again from the
// dashboard (asynq's "run") came back past admission: it must ask the gate
// and wait for its tenant's running slot, not run beside a task that holds
// it.
func TestArchivedTaskRunAgainStaysUnderTheRunningCap(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	plans := fair.DefaultPlans()
	plans["pro"] = fair.Policy{Weight: 1, MaxRunning: 1, MaxWaiting: 1000}
	rdb, catalog, d, enq := newFairRedisPlans(t, plans)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	tn := addTenant(t, catalog, "rerun-cap", tenantctx.StatusActive)

	var running, most atomic.Int64
	// rerun tells the handler that the archived render was run again. It
	// is the test's own: a package variable stayed set for the next run
	// of the test (go test -count=2), whose first render then completed
	// instead of being archived.
	var rerun atomic.Bool
	release := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	handler := worker.Handle(func(ctx context.Context, p tasks.InvoicePDF) error {
		now := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if now <= m || most.CompareAndSwap(m, now) {
				break
			}
		}
		if n, _ := asynq.GetRetryCount(ctx); p.InvoiceID == 1 && n == 0 && !rerun.Load() {
			return worker.Permanentf("invoice cannot be rendered")
		}
		if p.InvoiceID == 2 {
			<-release // holds the tenant's one slot
		}
		return nil
	})
	reporter := d.NewReporter(discardLogger())
	t.Cleanup(func() { reporter.Close(context.Background()) })
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: reporter, Parker: d},
		map[string]asynq.Handler{tasks.TypeInvoicePDF: handler})
	beat, stop := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		d.Serve(beat, fair.Membership{ID: "w", Queues: tasks.Queues, Concurrency: 4, Interval: 100 * time.Millisecond}, discardLogger())
	}()
	t.Cleanup(func() { stop(); <-served })
	startServer(t, asynq.RedisClientOpt{Addr: rdb.Options().Addr}, mux, worker.ServerOptions{Concurrency: 4})

	first, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the first render archived", func() bool { return state(t, rdb, first.Info.ID) == "archived" })
	if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 2}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the second render running", func() bool { return running.Load() == 1 })
	rerun.Store(true)
	if err := ins.RunTask(tasks.QueueDefault, first.Info.ID); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the archived render taken again", func() bool {
		st := state(t, rdb, first.Info.ID)
		return st != "pending" && st != "archived"
	})
	time.Sleep(300 * time.Millisecond) // let a wrongly admitted run show
	if m := most.Load(); m > 1 {
		t.Fatalf("%d of the tenant's tasks ran at once, want at most its max_running of 1", m)
	}
	close(release)
	testenv.WaitFor(t, time.Minute, "the render run again completes", func() bool { return state(t, rdb, first.Info.ID) == "completed" })
}
