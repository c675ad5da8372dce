package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDrainDiscardsRetryingTasks: an operator's drain of a tenant also
// discards its task waiting in asynq's retry set after a failed attempt,
// and one asynq's forwarder moved from there into the pending list,
// counted apart (Retrying), along with its waiting and admitted tasks; a
// task is gone whole (no hash, no member of the set), its look-up finds
// nothing and enqueueing it again makes a new task. Another tenant's
// retrying task stays and runs again; nothing of the drained tenant runs
// afterwards, on a real redis-server with a real asynq server.
func TestDrainDiscardsRetryingTasks(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	catalog := memstore.New()
	d := fair.New(rdb, fair.Config{Lease: fairLease, TaskIDs: tasks.TenantIDStems})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}))
	drained := addTenant(t, catalog, "drainretry-acme", tenantctx.StatusActive)
	kept := addTenant(t, catalog, "drainretry-globex", tenantctx.StatusActive)

	var mu sync.Mutex
	runs := map[string]int{} // tenant/invoice -> attempts
	runsOf := func(tenantID string, invoice int64) int {
		mu.Lock()
		defer mu.Unlock()
		return runs[fmt.Sprintf("%s/%d", tenantID, invoice)]
	}
	reporter := d.NewReporter(discardLogger())
	t.Cleanup(func() { reporter.Close(context.Background()) })
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: reporter, Parker: d}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(_ context.Context, p tasks.InvoicePDF) error {
			mu.Lock()
			k := fmt.Sprintf("%s/%d", p.TenantID, p.InvoiceID)
			runs[k]++
			n := runs[k]
			mu.Unlock()
			if (p.InvoiceID == 1 || p.InvoiceID == 7) && n == 1 {
				return errors.New("connection reset by peer") // retried
			}
			return nil
		}),
	})
	start := func() *asynq.Server {
		cfg := worker.ServerConfig(worker.ServerOptions{Concurrency: 2, Logger: discardLogger(), ShutdownTimeout: 5 * time.Second,
			DelayedTaskCheckInterval: 100 * time.Millisecond})
		// Long enough that no retry comes due before the server below is
		// shut down, also on a loaded machine.
		cfg.RetryDelayFunc = func(int, error, *asynq.Task) time.Duration { return 5 * time.Second }
		srv := asynq.NewServerFromRedisClient(rdb, cfg)
		if err := srv.Start(mux); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown)
		return srv
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) { // a bound for the failure message, not a measurement
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	retryKey := "asynq:{" + tasks.QueueDefault + "}:retry"
	inRetry := func(id string) bool {
		_, err := rdb.ZScore(ctx, retryKey, id).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		return err == nil
	}
	enqueue := func(tenantID string, invoice int64) string {
		t.Helper()
		res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tenantID, InvoiceID: invoice})
		if err != nil {
			t.Fatal(err)
		}
		return res.Info.ID
	}

	// Each tenant's render 1 fails once: the drained tenant's first, so
	// the kept tenant's retry comes due after it.
	srv := start()
	drainedRetry := enqueue(drained.ID, 1)
	waitFor("the drained tenant's render in the retry set", func() bool { return inRetry(drainedRetry) })
	dueRetry := enqueue(drained.ID, 7)
	waitFor("the drained tenant's second render in the retry set", func() bool { return inRetry(dueRetry) })
	keptRetry := enqueue(kept.ID, 1)
	waitFor("the kept tenant's render in the retry set", func() bool { return inRetry(keptRetry) })
	// No worker runs while the drain does: asynq's forwarder, which moves
	// due retries into the pending list, runs in every server.
	srv.Shutdown()
	// Its second render came due: asynq's forwarder moved it into the
	// pending list, where no worker took it yet.
	// (Made due now; the forwarder may have moved it already.)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	if info, err := ins.GetTaskInfo(tasks.QueueDefault, dueRetry); err != nil {
		t.Fatal(err)
	} else if info.State != asynq.TaskStatePending {
		if err := ins.RunTask(tasks.QueueDefault, dueRetry); err != nil {
			t.Fatal(err)
		}
	}
	for inv := int64(2); inv <= 6; inv++ {
		enqueue(drained.ID, inv) // admitted (pending in asynq) or waiting in the backlog
	}

	n, err := d.Drain(ctx, drained.ID, tasks.WorkQueues...)
	if err != nil {
		t.Fatal(err)
	}
	if n.Retrying != 2 || n.Waiting+n.Admitted != 5 || n.Parked != 0 || n.Scheduled != 0 || n.Total() != 7 {
		t.Errorf("Drain = %+v (total %d); want the 2 retrying renders and the 5 waiting or admitted ones, 7 in all", n, n.Total())
	}
	if st := state(t, rdb, dueRetry); st != "gone" {
		t.Errorf("asynq still holds the drained tenant's due retry %s (%s)", dueRetry, st)
	}
	if inRetry(drainedRetry) {
		t.Errorf("the drained tenant's render %s is still in asynq's retry set", drainedRetry)
	}
	if st := state(t, rdb, drainedRetry); st != "gone" {
		t.Errorf("asynq still holds the drained tenant's render %s (%s)", drainedRetry, st)
	}
	if !inRetry(keptRetry) || state(t, rdb, keptRetry) != "retry" {
		t.Errorf("the kept tenant's render %s left asynq's retry set (%s)", keptRetry, state(t, rdb, keptRetry))
	}
	if _, err := enq.TenantTask(ctx, drained.ID, drainedRetry); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Errorf("look-up of the drained render: %v, want ErrTaskNotFound", err)
	}

	// The kept tenant's retry, due after the drained one's would have
	// been, runs: by then asynq's forwarder has gone past both.
	start()
	waitFor("the kept tenant's render to run again", func() bool { return runsOf(kept.ID, 1) == 2 })
	for inv := int64(1); inv <= 7; inv++ {
		want := 0
		if inv == 1 || inv == 7 {
			want = 1 // the failed attempt before the drain
		}
		if got := runsOf(drained.ID, inv); got != want {
			t.Errorf("the drained tenant's render %d ran %d times, want %d", inv, got, want)
		}
	}

	// Enqueued again, the drained render is a new task, not a duplicate.
	res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: drained.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Existing {
		t.Errorf("enqueue of the drained render again: existing %s task, want a new one", res.Info.State)
	}
}
