package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestKeptLastAttemptIsNotDueBeforeItsDelay: asynq's retry set counts in
// whole seconds, and a kept last attempt's retry time is rounded up to
// one, never down: rounded down it came back up to a second before its
// delay, and with a sub-second delay at once, which let another worker
// take it before asynq had ended the kept attempt (asynq's end of it
// deletes the task by id, the new run's included).
func TestKeptLastAttemptIsNotDueBeforeItsDelay(t *testing.T) {
	t.Parallel()
	_, rdb := newRedisClient(t)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "keep-whole-second", tenantctx.StatusProvisioning)
	// One fixed delay, long enough for the task to stay in the retry set
	// while the test reads its retry time.
	const delay = 10 * time.Second
	mux := worker.MuxOf(worker.WithLastAttemptKeep(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Redis: rdb}, delay, delay), map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error { return nil }),
	})
	var began atomic.Int64 // when the first attempt began, Unix nanoseconds
	startServerOn(t, rdb, asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		began.CompareAndSwap(0, time.Now().UnixNano())
		return mux.ProcessTask(ctx, task)
	}), worker.ServerOptions{Concurrency: 1})
	id := injectRetry(t, rdb, tn.ID, 1, lastRetry)
	testenv.WaitFor(t, time.Minute, "the last attempt kept in the retry set", func() bool {
		st := state(t, rdb, id)
		if st == "archived" {
			t.Fatal("the last attempt was archived, not kept")
		}
		return st == "retry"
	})
	score, err := rdb.ZScore(context.Background(), "asynq:{"+tasks.QueueDefault+"}:retry", id).Result()
	if err != nil {
		t.Fatal(err)
	}
	due := time.Unix(int64(score), 0)
	if earliest := time.Unix(0, began.Load()).Add(delay); due.Before(earliest) {
		t.Errorf("kept task due at %s, before its attempt's start plus its %v delay (%s)",
			due.Format(time.RFC3339Nano), delay, earliest.Format(time.RFC3339Nano))
	}
}
