package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDatabaseSlotsLastAttemptIsKept: a task on its last allowed attempt
// that finds its tenant database's slots taken (an operator's "run" of
// archived tasks after the database came back, a burst) is turned away as
// any other (it holds no worker slot while the database is busy), but not
// archived: asynq archives a task that fails on its last attempt whatever
// the error, so it would be archived ("failed after retries") without
// having run. KeepLastAttempt puts it back into asynq's retry set, with
// its retry count, and it runs once it comes back.
func TestDatabaseSlotsLastAttemptIsKept(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	opt, rdb := newRedisClient(t)
	catalog := memstore.New()
	if _, err := catalog.AddDatabase(ctx, "second", "postgres://unused/second"); err != nil {
		t.Fatal(err)
	}
	tn, err := tenantctx.New("slots-last", "slots-last", "pro")
	if err != nil {
		t.Fatal(err)
	}
	tn.Database = "second"
	if tn, err = catalog.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	if tn, err = catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	held := make(chan struct{}, 1)
	ran := make(chan int64, 4)
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, DatabaseSlots: 1, Redis: rdb}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, p tasks.InvoicePDF) error {
			if p.InvoiceID == 1 { // holds the database's one slot
				held <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			ran <- p.InvoiceID
			return nil
		}),
	})
	startServerOn(t, rdb, mux, worker.ServerOptions{Concurrency: 2})

	enq, ins := newTestEnqueuer(t, opt)
	if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}); err != nil {
		t.Fatal(err)
	}
	<-held
	// The last attempt of a task that failed lastRetry times before.
	id := injectRetry(t, rdb, tn.ID, 2, lastRetry)
	// It meets the taken slot for longer than the slots' wait (5 s), is
	// turned away, and kept.
	testenv.WaitFor(t, time.Minute, "the last attempt is kept or archived", func() bool {
		st := state(t, rdb, id)
		return st == "retry" || st == "archived"
	})
	if st := state(t, rdb, id); st == "archived" {
		info, _ := ins.GetTaskInfo(tasks.QueueDefault, id)
		lastErr := ""
		if info != nil {
			lastErr = info.LastErr
		}
		t.Fatalf("the last attempt was archived without running (last error %q); want it kept for a later retry", lastErr)
	}
	if len(ran) != 0 {
		t.Fatal("the last attempt ran past the database's one slot")
	}
	info, err := ins.GetTaskInfo(tasks.QueueDefault, id)
	if err != nil || info.Retried != lastRetry {
		t.Fatalf("kept task %+v, %v; want its retry count %d", info, err, lastRetry)
	}
	// The slot is free again; the retry comes back (at once here) and runs.
	close(release)
	if err := ins.RunTask(tasks.QueueDefault, id); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the kept last attempt runs", func() bool { return len(ran) == 2 })
}
