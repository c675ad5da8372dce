package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestRenderCancelledFromTheDashboardFreesItsSlot: an operator cancels a
// running render from asynq's dashboard (the inspector's CancelProcessing).
// asynq cancels the handler's ctx and fails the attempt into its retry
// set, and ReportCost reports the attempt cut off. The tenant, at its
// running cap of one, has another render waiting: it must start once the
// cancelled one's handler returned (at the report, or the worker heartbeat
// after it), not when the cancelled run's lease (30 s) runs out.
func TestRenderCancelledFromTheDashboardFreesItsSlot(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	opt, rdb := newRedisClient(t)
	d := fair.New(rdb, fair.Config{Lease: 30 * time.Second})
	catalog := memstore.New()
	tn := addTenant(t, catalog, "cancel-cap", tenantctx.StatusActive)
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}))
	if _, err := catalog.SetLimits(ctx, tn.ID, "", tenantctx.Limits{MaxRunning: 1}); err != nil {
		t.Fatal(err)
	}
	first, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 2}); err != nil {
		t.Fatal(err)
	}
	started := make(chan int64, 4)
	rep := d.NewReporter(discardLogger())
	t.Cleanup(func() { rep.Close(context.Background()) })
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: rep, Parker: d}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, p tasks.InvoicePDF) error {
			started <- p.InvoiceID
			if p.InvoiceID == 1 {
				<-ctx.Done() // a long render, cancelled from the dashboard
				return ctx.Err()
			}
			return nil
		}),
	})
	startServer(t, opt, mux, worker.ServerOptions{Concurrency: 2})
	select {
	case id := <-started:
		if id != 1 {
			t.Fatalf("invoice %d started first under max_running 1, want 1", id)
		}
	case <-time.After(time.Minute):
		t.Fatal("the first render did not start")
	}
	if err := asynq.NewInspectorFromRedisClient(rdb).CancelProcessing(first.Info.ID); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "asynq to fail the cancelled render into its retry set", func() bool {
		return state(t, rdb, first.Info.ID) == "retry"
	})
	// Workers' heartbeats (Serve: one a second) admit what fits; 15 s is
	// half the cancelled run's lease.
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case id := <-started:
			if id != 2 {
				t.Fatalf("invoice %d started, want 2", id)
			}
			return
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			s, _ := d.Stats(ctx, tn.ID, tasks.QueueDefault)
			t.Fatalf("the tenant's next render did not start within 15 s of the cancel: the cancelled render keeps its slot (stats %+v)", s[0])
		}
		if err := d.Heartbeat(ctx, tasks.QueueDefault, "test-worker", 2, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
}
