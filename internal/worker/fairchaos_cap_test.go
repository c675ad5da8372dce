package worker_test

import (
	"context"
	"errors"
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

// TestRunningCapAcrossWorkersWithRetries: three asynq servers on one Redis
// run a tenant's renders through the production chain, a third of them
// failing their first attempts (retried at once through asynq's retry set
// and the gate) and some panicking: the tenant never has more than its
// max_running in handlers at once, and every task completes exactly once.
func TestRunningCapAcrossWorkersWithRetries(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	plans := fair.DefaultPlans()
	plans["pro"] = fair.Policy{Weight: 1, MaxRunning: 2, MaxWaiting: 1000}
	rdb, catalog, d, enq := newFairRedisPlans(t, plans)
	tn := addTenant(t, catalog, "chaos-cap", tenantctx.StatusActive)
	other := addTenant(t, catalog, "chaos-other", tenantctx.StatusActive)

	var mu sync.Mutex
	running := map[string]int{}
	most := map[string]int{}
	done := map[int64]int{}
	var attempts atomic.Int64
	handler := worker.Handle(func(ctx context.Context, p tasks.InvoicePDF) error {
		attempts.Add(1)
		mu.Lock()
		running[p.TenantID]++
		most[p.TenantID] = max(most[p.TenantID], running[p.TenantID])
		mu.Unlock()
		defer func() {
			mu.Lock()
			running[p.TenantID]--
			mu.Unlock()
		}()
		time.Sleep(20 * time.Millisecond)
		n, _ := asynq.GetRetryCount(ctx)
		switch {
		case n < 2 && p.InvoiceID%3 == 0:
			return errors.New("transient")
		case n == 0 && p.InvoiceID%7 == 0:
			panic("boom")
		}
		mu.Lock()
		done[p.InvoiceID]++
		mu.Unlock()
		return nil
	})
	beat, stop := context.WithCancel(context.Background())
	var served sync.WaitGroup
	for i := range 3 {
		served.Go(func() {
			d.Serve(beat, fair.Membership{ID: "w" + string(rune('a'+i)), Queues: tasks.Queues, Concurrency: 4, Interval: 100 * time.Millisecond}, discardLogger())
		})
		reporter := d.NewReporter(discardLogger())
		mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: reporter, Parker: d},
			map[string]asynq.Handler{tasks.TypeInvoicePDF: handler})
		cfg := worker.ServerConfig(worker.ServerOptions{Concurrency: 4, Logger: discardLogger(), ShutdownTimeout: 5 * time.Second,
			DelayedTaskCheckInterval: 50 * time.Millisecond})
		cfg.RetryDelayFunc = func(int, error, *asynq.Task) time.Duration { return 0 }
		srv := asynq.NewServerFromRedisClient(rdb, cfg)
		if err := srv.Start(mux); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			srv.Shutdown()
			reporter.Close(context.Background())
		})
	}
	t.Cleanup(func() { stop(); served.Wait() })

	const n = 60
	for i := range n {
		for _, id := range []string{tn.ID, other.ID} {
			if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: id, InvoiceID: int64(i + 1)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	testenv.WaitFor(t, time.Minute, "every task completed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) == n
	})
	mu.Lock()
	defer mu.Unlock()
	for id, m := range most {
		if m > 2 {
			t.Errorf("tenant %s had %d tasks in handlers at once, want at most its max_running of 2", id, m)
		}
	}
	t.Logf("attempts %d, most at once %v", attempts.Load(), most)
}
