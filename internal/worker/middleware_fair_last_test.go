package worker_test

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// lastRetry is the retry limit of the tasks injectRetry makes; a task
// retried that often runs its last allowed attempt.
const lastRetry = 10

// injectRetry puts an invoice:pdf task of tenantID that failed retried
// times before into asynq's pending list, past the dispatcher, as asynq's
// forwarder does when a retry's backoff is over. It returns the task id.
func injectRetry(t *testing.T, rdb *redis.Client, tenantID string, invoiceID int64, retried int) string {
	t.Helper()
	ctx := context.Background()
	p := tasks.InvoicePDF{TenantID: tenantID, InvoiceID: invoiceID}
	payload, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	id := p.Spec().TaskID
	msg := fair.Message{ID: id, Type: tasks.TypeInvoicePDF, Queue: tasks.QueueDefault, Payload: payload, Retry: lastRetry, Timeout: time.Minute}.Encode()
	msg = protowire.AppendVarint(protowire.AppendTag(msg, 6, protowire.VarintType), uint64(retried))
	A := "asynq:{" + tasks.QueueDefault + "}:"
	if err := rdb.HSet(ctx, A+"t:"+id, "msg", msg, "state", "pending", "pending_since", time.Now().UnixNano()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.LPush(ctx, A+"pending", id).Err(); err != nil {
		t.Fatal(err)
	}
	return id
}

// handedBack reports whether the dispatcher holds task id of tenantID as
// parked and asynq has let it go (no record of it left).
func handedBack(t *testing.T, rdb *redis.Client, d *fair.Dispatcher, tenantID, id string) bool {
	t.Helper()
	s, err := d.Stats(context.Background(), tenantID, tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	return s[0].Parked == 1 && state(t, rdb, id) == "gone"
}

// state returns asynq's state of task id in the default queue (read from
// its task hash: asynq's inspector knows a queue only once asynq's client
// enqueued to it), or "gone".
func state(t *testing.T, rdb *redis.Client, id string) string {
	t.Helper()
	st, err := rdb.HGet(context.Background(), "asynq:{"+tasks.QueueDefault+"}:t:"+id, "state").Result()
	if errors.Is(err, redis.Nil) {
		return "gone"
	}
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestLastAttemptOfSuspendedTenantIsKept: a suspended tenant's task that a
// worker takes on its last allowed attempt is parked like any other: asynq
// lets it go without archiving it ("retries exhausted"), and it runs, with
// its retry count, once the tenant resumes.
func TestLastAttemptOfSuspendedTenantIsKept(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	w := newFairWorker(t)
	tn := addTenant(t, w.catalog, "last-susp", tenantctx.StatusSuspended)
	if _, err := w.d.Hold(ctx, tn.ID, fair.Suspended, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	id := injectRetry(t, w.rdb, tn.ID, 1, lastRetry)
	testenv.WaitFor(t, time.Minute, "the last attempt parked (or archived)", func() bool {
		return state(t, w.rdb, id) == "archived" || handedBack(t, w.rdb, w.d, tn.ID, id)
	})
	if st := state(t, w.rdb, id); st != "gone" {
		t.Fatalf("the suspended tenant's last attempt is %s in asynq; want it parked in the dispatcher", st)
	}
	if n := w.runs.Load(); n != 0 {
		t.Fatalf("handler ran %d times while the tenant was suspended", n)
	}

	if _, err := w.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	if _, err := w.d.Release(ctx, tn.ID, fair.Suspended, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the parked last attempt runs after the resume", func() bool { return w.runs.Load() == 1 })
	if n := w.retried.Load(); n != lastRetry {
		t.Fatalf("ran with retry count %d, want %d (kept)", n, lastRetry)
	}
	if st := state(t, w.rdb, id); st == "archived" {
		t.Fatal("the task was archived after it ran")
	}
}

// TestLastAttemptOfPausedTenantWaits: a retry that comes back from asynq
// on its last allowed attempt while its tenant's queue is paused does not
// run: the gate parks it (asynq lets it go, without archiving it), and it
// runs once the pause is released.
func TestLastAttemptOfPausedTenantWaits(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	w := newFairWorker(t)
	tn := addTenant(t, w.catalog, "last-pause", tenantctx.StatusActive)
	if _, err := w.d.Hold(ctx, tn.ID, fair.Paused, tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	id := injectRetry(t, w.rdb, tn.ID, 1, lastRetry)
	testenv.WaitFor(t, time.Minute, "the last attempt parked (or run)", func() bool {
		return w.runs.Load() > 0 || handedBack(t, w.rdb, w.d, tn.ID, id)
	})
	if n := w.runs.Load(); n != 0 {
		t.Fatalf("handler ran %d times while the tenant was paused", n)
	}

	if _, err := w.d.Release(ctx, tn.ID, fair.Paused, tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the parked last attempt runs after the release", func() bool { return w.runs.Load() == 1 })
	if n := w.retried.Load(); n != lastRetry {
		t.Fatalf("ran with retry count %d, want %d (kept)", n, lastRetry)
	}
}

// TestParkedTaskIsFoundByItsID: a parked task asynq has let go is still
// the tenant's task: its status reads pending, and an enqueue of its id
// finds it (Existing) instead of adding a fresh copy; it runs once, as it
// was (its retry count kept), after the release.
func TestParkedTaskIsFoundByItsID(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	w := newFairWorker(t)
	tn := addTenant(t, w.catalog, "park-find", tenantctx.StatusActive)
	if _, err := w.d.Hold(ctx, tn.ID, fair.Paused, tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	id := injectRetry(t, w.rdb, tn.ID, 1, lastRetry)
	testenv.WaitFor(t, time.Minute, "the task parked", func() bool { return handedBack(t, w.rdb, w.d, tn.ID, id) })
	info, err := w.enq.TenantTask(ctx, tn.ID, id)
	if err != nil || info.State != asynq.TaskStatePending || info.ID != id {
		t.Fatalf("TenantTask of the parked task = %+v, %v; want it pending", info, err)
	}
	if _, err := w.enq.TenantTask(ctx, "tn_someoneelse", id); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Fatalf("another tenant's TenantTask of the parked task: %v, want ErrTaskNotFound", err)
	}
	r, err := w.enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
	if err != nil || !r.Existing {
		t.Fatalf("enqueue of the parked task's id = %+v, %v; want the parked task (Existing)", r, err)
	}

	if _, err := w.d.Release(ctx, tn.ID, fair.Paused, tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the parked task runs after the release", func() bool { return w.runs.Load() == 1 })
	if n := w.retried.Load(); n != lastRetry {
		t.Fatalf("ran with retry count %d, want %d: the parked task, not a fresh copy", n, lastRetry)
	}
	testenv.WaitFor(t, time.Minute, "nothing left of the tenant in the dispatcher", func() bool {
		s := w.stats(t, tn.ID)
		return s.Parked == 0 && s.Waiting == 0 && s.Admitted == 0
	})
	if n := w.runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}

// TestParkedTaskStaysOutOfAsynqWhilePaused: a first attempt parked while
// its tenant was suspended, then paused, then resumed, does not run while
// the pause lasts: the dispatcher keeps it, so asynq has nothing to bring
// back (it used to wait an hour in asynq's retry set, come back with a
// retry count of 0, and run past the gate).
func TestParkedTaskStaysOutOfAsynqWhilePaused(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	w := newFairWorker(t)
	tn := addTenant(t, w.catalog, "park-pause", tenantctx.StatusSuspended)
	if _, err := w.d.Hold(ctx, tn.ID, fair.Suspended, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	// Enqueued past the dispatcher: a worker dequeues it and parks it.
	plain := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(w.rdb), w.ins, discardLogger())
	res, err := plain.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Info.ID
	testenv.WaitFor(t, time.Minute, "the task parked", func() bool {
		s := w.stats(t, tn.ID)
		st := state(t, w.rdb, id)
		return s.Parked == 1 && (st == "gone" || st == "retry")
	})
	if _, err := w.d.Hold(ctx, tn.ID, fair.Paused, tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	if _, err := w.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	if _, err := w.d.Release(ctx, tn.ID, fair.Suspended, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	// The hour in asynq's retry set is over: asynq's forwarder would make
	// the task pending (RunTask does the same at once).
	if err := w.ins.RunTask(tasks.QueueDefault, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "asynq's lists of the queue to be empty", func() bool {
		info, err := w.ins.GetQueueInfo(tasks.QueueDefault)
		return err == nil && info.Pending == 0 && info.Active == 0
	})
	if n := w.runs.Load(); n != 0 {
		t.Fatalf("handler ran %d times while the tenant was paused", n)
	}
	if s := w.stats(t, tn.ID); s.Parked != 1 {
		t.Fatalf("stats while paused: %+v; want the task parked", s)
	}

	if _, err := w.d.Release(ctx, tn.ID, fair.Paused, tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the parked task runs after the pause", func() bool { return w.runs.Load() == 1 })
}

// TestLastAttemptsStayUnderTheCap: a retry on its last allowed attempt
// that comes back while its tenant is at its running cap is parked like
// any retry (asynq lets it go without archiving it) and runs once a slot
// is free, with its retry count: the cap holds for last attempts too.
func TestLastAttemptsStayUnderTheCap(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	rdb, catalog, d, enq := newFairRedis(t)
	tn := addTenant(t, catalog, "last-cap", tenantctx.StatusActive)
	if _, err := catalog.SetLimits(ctx, tn.ID, "", tenantctx.Limits{MaxRunning: 1}); err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	var running, most, retried atomic.Int64
	ran := make(chan int64, 10)
	reporter := d.NewReporter(discardLogger())
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: reporter, Parker: d}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, p tasks.InvoicePDF) error {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if p.InvoiceID == 2 {
				r, _ := asynq.GetRetryCount(ctx)
				retried.Store(int64(r))
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
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the server's shutdown, should the test stop early

	if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}); err != nil {
		t.Fatal(err)
	}
	if got := <-ran; got != 1 {
		t.Fatalf("ran invoice %d first", got)
	}
	id := injectRetry(t, rdb, tn.ID, 2, lastRetry)
	testenv.WaitFor(t, time.Minute, "the last attempt parked (or run)", func() bool {
		return len(ran) > 0 || handedBack(t, rdb, d, tn.ID, id)
	})
	select {
	case got := <-ran:
		t.Fatalf("invoice %d ran while its tenant's only slot was taken", got)
	default:
	}

	unblock()
	testenv.WaitFor(t, time.Minute, "invoice 1's report", func() bool {
		s, err := d.Stats(ctx, tn.ID, tasks.QueueDefault)
		return err == nil && s[0].Admitted == 0
	})
	// Any worker's heartbeat puts the parked retry back into the backlog,
	// once its hand-back can no longer arrive.
	testenv.WaitFor(t, time.Minute, "the parked last attempt to run once the slot was free", func() bool {
		if err := d.Heartbeat(ctx, tasks.QueueDefault, "test-worker", 4, time.Minute); err != nil {
			t.Fatal(err)
		}
		return len(ran) > 0
	})
	if got := <-ran; got != 2 {
		t.Fatalf("ran invoice %d, want the last attempt of invoice 2", got)
	}
	if n := retried.Load(); n != lastRetry {
		t.Fatalf("ran with retry count %d, want %d (kept)", n, lastRetry)
	}
	if m := most.Load(); m > 1 {
		t.Fatalf("%d tasks of the tenant ran at once, cap 1", m)
	}
}
