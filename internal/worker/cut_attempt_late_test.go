package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// TestCutOffAttemptSlowToReturnIsCharged: asynq's shutdown stops waiting
// for a handler at SHUTDOWN_TIMEOUT, cancels its ctx and puts the task
// back, and returns without waiting for the handler to return. A handler
// that takes a moment to notice (a render between two pages, a query
// being cancelled) reports its cut-off attempt after that, and the
// worker's shutdown (workerapp: the server, then the reporter) had
// closed the reporter by then: the report was dropped ("completion report
// after the reporter was closed"), and the tenant got the attempt's worker
// time free, which Report.CutOff was added to prevent.
func TestCutOffAttemptSlowToReturnIsCharged(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := admittedRender(t, "cut-late", fairLease)

	const cut = 300 * time.Millisecond
	started := make(chan struct{}, 1)
	rep1 := r.d.NewReporter(discardLogger())
	mux1 := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: r.catalog, Reporter: rep1, Parker: r.d}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			started <- struct{}{}
			<-ctx.Done()
			time.Sleep(100 * time.Millisecond) // the page being drawn
			return ctx.Err()
		}),
	})
	srv := asynq.NewServerFromRedisClient(r.rdb, worker.ServerConfig(worker.ServerOptions{Concurrency: 1, ShutdownTimeout: cut, Logger: discardLogger()}))
	if err := srv.Start(mux1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(time.Minute): // a bound for the failure message, not a measurement
		t.Fatal("the first worker did not start the render")
	}
	// workerapp's shutdown of the task server and its reporter.
	srv.Shutdown()
	rep1.Close(ctx)

	r.startSecond(t)
	testenv.WaitFor(t, time.Minute, "the render to run on the second worker and be reported", func() bool {
		s := r.stats(t)
		return r.runs.Load() == 1 && s.Admitted == 0 && s.Running == 0
	})
	st, err := r.d.Stats(ctx, r.tenant.ID, tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	w := float64(max(st[0].Policy.Weight, 1))
	charged := time.Duration(tenantVirtualTime(t, r.rdb, r.tenant.ID) * w * float64(time.Microsecond))
	if charged < cut {
		t.Fatalf("tenant charged %v of worker time for the render; want at least the %v its cut-off attempt took on the first worker", charged, cut)
	}
}
