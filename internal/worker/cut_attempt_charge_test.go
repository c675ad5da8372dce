package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// tenantVirtualTime is the tenant's virtual time in the default queue
// (what fair dispatch has charged it, over its weight): its score in the
// ready set, or the vt its state keeps while it is not ready.
func tenantVirtualTime(t *testing.T, rdb *redis.Client, tenantID string) float64 {
	t.Helper()
	ctx := context.Background()
	p := "fair:{" + tasks.QueueDefault + "}:"
	if s, err := rdb.ZScore(ctx, p+"ready", tenantID).Result(); err == nil {
		return s
	}
	v, err := rdb.HGet(ctx, p+"t:"+tenantID, "vt").Float64()
	if err != nil {
		t.Fatalf("virtual time of %s: %v", tenantID, err)
	}
	return v
}

// TestAttemptCutOffByShutdownIsCharged: a worker's shutdown that stops
// waiting for a handler (SHUTDOWN_TIMEOUT) puts the task back into asynq's
// pending list, and another worker runs it again. The worker time the cut
// attempt took is worker time the tenant used: fair dispatch measures a
// tenant's share in worker time, "every worker reports each attempt's
// measured duration", and the completion script says a task asynq put back
// to pending has "its cost so far charged all the same". The cut attempt
// must be charged (without ending the run, which goes on on the second
// worker); it was not reported at all, so a tenant whose long tasks are cut
// by every rolling deploy got that worker time for free.
func TestAttemptCutOffByShutdownIsCharged(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := admittedRender(t, "cut-charge", fairLease)
	st, err := r.d.Stats(ctx, r.tenant.ID, tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	w := float64(max(st[0].Policy.Weight, 1))
	if v := tenantVirtualTime(t, r.rdb, r.tenant.ID); v*w > float64(fair.DefaultCost/time.Microsecond) {
		t.Fatalf("tenant charged %v us at admission, want the default estimate", v*w)
	}

	// The first worker runs the render until its shutdown gives up on it:
	// the attempt takes at least the shutdown timeout of worker time.
	const cut = 400 * time.Millisecond
	started := make(chan struct{}, 1)
	rep1 := r.d.NewReporter(discardLogger())
	mux1 := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: r.catalog, Reporter: rep1, Parker: r.d}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}),
	})
	srv := startServer(t, r.redis, mux1, worker.ServerOptions{Concurrency: 1, ShutdownTimeout: cut})
	select {
	case <-started:
	case <-time.After(time.Minute): // a bound for the failure message, not a measurement
		t.Fatal("the first worker did not start the render")
	}
	srv.Shutdown()
	rep1.Close(ctx)
	if s := state(t, r.rdb, r.id); s != "pending" {
		t.Fatalf("after the shutdown the render is %s in asynq, want pending (put back)", s)
	}

	// The second worker runs it at once.
	r.startSecond(t)
	testenv.WaitFor(t, time.Minute, "the render to run on the second worker and be reported", func() bool {
		s := r.stats(t)
		return r.runs.Load() == 1 && s.Admitted == 0 && s.Running == 0
	})

	charged := time.Duration(tenantVirtualTime(t, r.rdb, r.tenant.ID) * w * float64(time.Microsecond))
	if charged < cut {
		t.Fatalf("tenant charged %v of worker time for the render; want at least the %v its cut-off attempt took on the first worker", charged, cut)
	}
}
