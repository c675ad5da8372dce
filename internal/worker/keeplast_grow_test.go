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

// TestKeptLastAttemptMessageDoesNotGrow: a last attempt that a wait keeps
// again and again (a tenant suspended for weeks without fair dispatch, a
// provisioning that never ends) comes back every 45-60 s; its message in
// asynq's task hash must not grow by one error and one run header each
// time (about 2,000 keeps a day per task), as asynq's own retry, which
// rewrites the message, never lets it.
func TestKeptLastAttemptMessageDoesNotGrow(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "keep-grow", tenantctx.StatusSuspended)
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Redis: rdb}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error { return nil }),
	})
	startServerOn(t, rdb, mux, worker.ServerOptions{Concurrency: 1, TaskCheckInterval: 100 * time.Millisecond})
	id := injectRetry(t, rdb, tn.ID, 1, lastRetry)
	A := "asynq:{" + tasks.QueueDefault + "}:"
	var first int
	for i := range 6 {
		testenv.WaitFor(t, 30*time.Second, "the last attempt kept in the retry set", func() bool { return state(t, rdb, id) == "retry" })
		msg, err := rdb.HGet(ctx, A+"t:"+id, "msg").Result()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = len(msg)
		} else if len(msg) != first {
			t.Fatalf("message of the kept task is %d bytes after keep %d, %d after the first: it grows with every keep", len(msg), i+1, first)
		}
		// asynq's forwarder, at once: the task is due again.
		if err := rdb.ZRem(ctx, A+"retry", id).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.HSet(ctx, A+"t:"+id, "state", "pending").Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.LPush(ctx, A+"pending", id).Err(); err != nil {
			t.Fatal(err)
		}
	}
}
