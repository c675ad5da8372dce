package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
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

// reports collects what ReportCost reports.
type reports struct {
	mu   sync.Mutex
	list []fair.Report
}

func (r *reports) Report(rep fair.Report) {
	r.mu.Lock()
	r.list = append(r.list, rep)
	r.mu.Unlock()
}

func (r *reports) all() []fair.Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fair.Report(nil), r.list...)
}

// TestReportCostReportsTenantAttempts: every attempt of a tenant task is
// reported with its tenant, type and time, also a failed and a panicking
// one; system tasks and tasks without a usable tenant are not.
func TestReportCostReportsTenantAttempts(t *testing.T) {
	t.Parallel()
	catalog := memstore.New()
	tn := addTenant(t, catalog, "cost-acme", tenantctx.StatusActive)
	rep := &reports{}
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: rep}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, p tasks.InvoicePDF) error {
			time.Sleep(5 * time.Millisecond)
			switch p.InvoiceID {
			case 2:
				return errors.New("transient")
			case 3:
				panic("boom")
			}
			return nil
		}),
		tasks.TypeSweepOverdue: worker.Handle(func(context.Context, tasks.SweepOverdue) error { return nil }),
	})
	ctx := context.Background()
	for _, id := range []int{1, 2, 3} {
		_ = mux.ProcessTask(ctx, asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"`+tn.ID+`","invoice_id":`+string(rune('0'+id))+`}`)))
	}
	_ = mux.ProcessTask(ctx, asynq.NewTask(tasks.TypeSweepOverdue, []byte(`{"tick":1}`)))
	_ = mux.ProcessTask(ctx, asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"../x","invoice_id":1}`)))
	got := rep.all()
	if len(got) != 3 {
		t.Fatalf("%d reports, want 3 (one per tenant task attempt): %+v", len(got), got)
	}
	for _, r := range got {
		if r.TenantID != tn.ID || r.Type != tasks.TypeInvoicePDF || r.Cost < 5*time.Millisecond {
			t.Errorf("report %+v", r)
		}
	}
}

// fairLease is the lease of the dispatchers of these tests: short, so that
// the time after a park within which the worker's hand-back may still
// arrive (one and a half leases, fair.Dispatcher.ParkRun), before which a
// parked task does not come back, passes quickly.
const fairLease = time.Second

// newFairRedis returns a client of a real Redis of the test's own, a
// catalog, a dispatcher with fairLease and an enqueuer that
// admits through it.
func newFairRedis(t *testing.T) (*redis.Client, *memstore.Catalog, *fair.Dispatcher, *tasks.Enqueuer) {
	t.Helper()
	return newFairRedisPlans(t, nil)
}

// newFairRedisPlans is newFairRedis with the enqueuer's admission using
// plans (nil: the default plans).
func newFairRedisPlans(t *testing.T, plans fair.Plans) (*redis.Client, *memstore.Catalog, *fair.Dispatcher, *tasks.Enqueuer) {
	t.Helper()
	_, rdb := newRedisClient(t)
	catalog := memstore.New()
	ins := asynq.NewInspectorFromRedisClient(rdb)
	d := fair.New(rdb, fair.Config{Lease: fairLease})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), ins, discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog, Plans: plans}))
	return rdb, catalog, d, enq
}

// fairWorker is a real worker chain on a real Redis with fair dispatch: the
// enqueuer admits through the dispatcher, the server reports and parks.
type fairWorker struct {
	rdb     *redis.Client
	d       *fair.Dispatcher
	enq     *tasks.Enqueuer
	ins     *asynq.Inspector
	catalog *memstore.Catalog
	runs    atomic.Int64
	retried atomic.Int64 // the retry count of the last run
}

func newFairWorker(t *testing.T) *fairWorker {
	t.Helper()
	return newFairWorkerWith(t, func(o worker.MuxOptions) worker.MuxOptions { return o })
}

// newFairWorkerWith is newFairWorker with its chain's options passed
// through opts (worker.WithLastAttemptKeep).
func newFairWorkerWith(t *testing.T, opts func(worker.MuxOptions) worker.MuxOptions) *fairWorker {
	t.Helper()
	_, rdb := newRedisClient(t)
	w := &fairWorker{rdb: rdb, catalog: memstore.New(), ins: asynq.NewInspectorFromRedisClient(rdb)}
	w.d = fair.New(rdb, fair.Config{Lease: fairLease})
	// The worker's heartbeats, as in production: they bring a parked task
	// back once its hand-back can no longer arrive.
	beat, stop := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		w.d.Serve(beat, fair.Membership{ID: "test-worker", Queues: tasks.Queues, Concurrency: 2, Interval: 100 * time.Millisecond}, discardLogger())
	}()
	t.Cleanup(func() {
		stop()
		<-served
	})
	w.enq = tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), w.ins, discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: w.d, Tenants: w.catalog}))
	reporter := w.d.NewReporter(discardLogger())
	mux := worker.MuxOf(opts(worker.MuxOptions{Logger: discardLogger(), Catalog: w.catalog, Reporter: reporter, Parker: w.d, Redis: rdb}), map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			n, _ := asynq.GetRetryCount(ctx)
			w.retried.Store(int64(n))
			w.runs.Add(1)
			return nil
		}),
	})
	srv := asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{Concurrency: 2, Logger: discardLogger(), ShutdownTimeout: 5 * time.Second}))
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		reporter.Close(context.Background())
	})
	return w
}

func (w *fairWorker) stats(t *testing.T, tenantID string) fair.QueueStats {
	t.Helper()
	s, err := w.d.Stats(context.Background(), tenantID, tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	return s[0]
}

// TestFairChainFreesSlotsAndParksSuspendedTenants runs tasks through the
// production chain with fair dispatch: finished tasks free their slots
// (the reports arrive), and a task of a suspended tenant that a worker
// dequeued anyway is parked without running or counting a failure, then
// runs once the tenant resumes.
func TestFairChainFreesSlotsAndParksSuspendedTenants(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	w := newFairWorker(t)
	tn := addTenant(t, w.catalog, "park-acme", tenantctx.StatusActive)
	for i := range 5 {
		if _, err := w.enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, time.Minute, "all 5 tasks run and reported", func() bool {
		s := w.stats(t, tn.ID)
		return w.runs.Load() == 5 && s.Admitted == 0 && s.Waiting == 0
	})

	// Suspended in the catalog and held by the dispatcher, but a task
	// slipped into asynq past the dispatcher (enqueued directly): the
	// worker parks it instead of running it or retrying it every 15 s. The
	// dispatcher keeps it; asynq lets it go without counting a retry.
	if _, err := w.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	if _, err := w.d.Hold(ctx, tn.ID, fair.Suspended, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	p := tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 99}
	plain := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(w.rdb), w.ins, discardLogger())
	res, err := plain.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the task parked in the dispatcher, gone from asynq", func() bool {
		return handedBack(t, w.rdb, w.d, tn.ID, res.Info.ID)
	})
	if got := w.runs.Load(); got != 5 {
		t.Fatalf("handler ran %d times, want 5: the parked task must not run", got)
	}

	if _, err := w.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	if _, err := w.d.Release(ctx, tn.ID, fair.Suspended, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the parked task runs after the release", func() bool { return w.runs.Load() == 6 })
	if n := w.retried.Load(); n != 0 {
		t.Fatalf("the parked task ran with retry count %d, want 0: parking is not a failure", n)
	}
}

// TestRetryWaitsForARunningSlot: a task asynq retries comes back past
// admission; when its tenant is at its running cap, the worker parks it
// (no handler run, no retry counted: the dispatcher keeps it, asynq lets
// it go) and it runs once a slot is free, through the tenant's backlog:
// the cap holds for retries too.
//
// The second variant loses the gate's first answer after Redis applied the
// call (a timeout): the worker asks again and gets the same answer,
// instead of running the task while the dispatcher keeps it parked (it
// would then run again once released).
func TestRetryWaitsForARunningSlot(t *testing.T) {
	t.Parallel()
	t.Run("answered", func(t *testing.T) { t.Parallel(); retryWaitsForARunningSlot(t, false) })
	t.Run("first gate answer lost", func(t *testing.T) { t.Parallel(); retryWaitsForARunningSlot(t, true) })
}

// lostGateAnswer is the dispatcher with the answer of its first GateRun
// call lost: the call is applied in Redis, and the caller gets a timeout.
type lostGateAnswer struct {
	*fair.Dispatcher
	calls atomic.Int64
}

func (p *lostGateAnswer) GateRun(ctx context.Context, queue, taskID, tenantID, typ string) (bool, string, error) {
	parked, run, err := p.Dispatcher.GateRun(ctx, queue, taskID, tenantID, typ)
	if p.calls.Add(1) == 1 && err == nil {
		return false, "", fmt.Errorf("fair: gate retried task %s: read tcp: i/o timeout", taskID)
	}
	return parked, run, err
}

func retryWaitsForARunningSlot(t *testing.T, lose bool) {
	ctx := testContext(t)
	rdb, catalog, d, enq := newFairRedis(t)
	tn := addTenant(t, catalog, "retry-acme", tenantctx.StatusActive)
	if _, err := catalog.SetLimits(ctx, tn.ID, "", tenantctx.Limits{MaxRunning: 1}); err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	var running, most atomic.Int64
	ran := make(chan int64, 10)
	reporter := d.NewReporter(discardLogger())
	var parker worker.Parker = d
	lossy := &lostGateAnswer{Dispatcher: d}
	if lose {
		parker = lossy
	}
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: reporter, Parker: parker}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(_ context.Context, p tasks.InvoicePDF) error {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			ran <- p.InvoiceID
			if p.InvoiceID == 1 {
				<-release
			}
			return nil
		}),
	})
	srv := asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{Concurrency: 4, Logger: discardLogger(), ShutdownTimeout: 5 * time.Second}))
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		reporter.Close(context.Background())
	})

	if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}); err != nil {
		t.Fatal(err)
	}
	if got := <-ran; got != 1 {
		t.Fatalf("ran invoice %d first", got)
	}
	// Invoice 2's task failed twice before: asynq's forwarder puts it back
	// into the pending list, past the dispatcher.
	p := tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 2}
	payload, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	id := "invoice:pdf:" + tn.ID + ":2"
	msg := fair.Message{ID: id, Type: tasks.TypeInvoicePDF, Queue: tasks.QueueDefault, Payload: payload, Retry: 10, Timeout: time.Minute}.Encode()
	msg = protowire.AppendVarint(protowire.AppendTag(msg, 6, protowire.VarintType), 2) // retried: 2
	A := "asynq:{" + tasks.QueueDefault + "}:"
	rdb.HSet(ctx, A+"t:"+id, "msg", msg, "state", "pending", "pending_since", time.Now().UnixNano())
	rdb.LPush(ctx, A+"pending", id)

	testenv.WaitFor(t, time.Minute, "the retry parked while the cap was full", func() bool {
		return len(ran) > 0 || handedBack(t, rdb, d, tn.ID, id)
	})
	select {
	case got := <-ran:
		t.Fatalf("invoice %d ran while its tenant's only slot was taken", got)
	default:
	}

	close(release)
	testenv.WaitFor(t, time.Minute, "invoice 1's report", func() bool {
		s, err := d.Stats(ctx, tn.ID, tasks.QueueDefault)
		return err == nil && s[0].Admitted == 0
	})
	// Any worker's heartbeat puts the parked retry back into the backlog,
	// once its hand-back can no longer arrive.
	testenv.WaitFor(t, time.Minute, "the parked retry to run once the slot was free", func() bool {
		if err := d.Heartbeat(ctx, tasks.QueueDefault, "test-worker", 4, time.Minute); err != nil {
			t.Fatal(err)
		}
		return len(ran) > 0
	})
	if got := <-ran; got != 2 {
		t.Fatalf("ran invoice %d, want the retry of invoice 2", got)
	}
	if m := most.Load(); m > 1 {
		t.Fatalf("%d tasks of the tenant ran at once, cap 1", m)
	}
	if lose && lossy.calls.Load() < 2 {
		t.Fatalf("the gate was asked %d times; want again after the lost answer", lossy.calls.Load())
	}
	// Once: the parked record the lost answer left does not bring it back.
	for range 3 {
		if err := d.Heartbeat(ctx, tasks.QueueDefault, "test-worker", 4, time.Minute); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case got := <-ran:
		t.Fatalf("invoice %d ran a second time", got)
	default:
	}
}
