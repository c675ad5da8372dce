package worker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// rollWorker is one worker process as workerapp runs it with fair
// dispatch: its own Redis client, dispatcher, Reporter, idle waiter,
// asynq server and membership, shut down in workerapp's order.
type rollWorker struct {
	rdb      *redis.Client
	srv      *asynq.Server
	reporter *fair.Reporter
	stopIdle func()
	stopBeat context.CancelFunc
	beatDone chan struct{}
}

func startRollWorker(t *testing.T, addr, name string, catalog *memstore.Catalog, h asynq.Handler, shutdown time.Duration) *rollWorker {
	t.Helper()
	w := &rollWorker{rdb: redis.NewClient(&redis.Options{Addr: addr}), beatDone: make(chan struct{})}
	d := fair.New(w.rdb, fair.Config{})
	w.reporter = d.NewReporter(discardLogger())
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: w.reporter, Parker: d},
		map[string]asynq.Handler{tasks.TypeInvoicePDF: h})
	opts := worker.ServerOptions{Concurrency: 4, ShutdownTimeout: shutdown, Logger: discardLogger(), DelayedTaskCheckInterval: 50 * time.Millisecond}
	opts, _, w.stopIdle = worker.IdleWait(w.rdb, opts, 0)
	w.srv = asynq.NewServerFromRedisClient(w.rdb, worker.ServerConfig(opts))
	if err := w.srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	var beat context.Context
	beat, w.stopBeat = context.WithCancel(context.Background())
	go func() {
		defer close(w.beatDone)
		d.Serve(beat, fair.Membership{ID: name, Queues: opts.ServedQueues(), Concurrency: 4, Interval: 100 * time.Millisecond}, discardLogger())
	}()
	return w
}

// stop is workerapp's graceful shutdown (SIGTERM): idle waiter, asynq
// server (waits up to the shutdown timeout), reporter, membership, client.
func (w *rollWorker) stop() {
	w.stopIdle()
	w.srv.Shutdown()
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	w.reporter.Close(rctx)
	cancel()
	w.stopBeat()
	<-w.beatDone
	_ = w.rdb.Close()
}

// TestRollingDeployLeavesDispatcherIdle: a steady load over several tenants
// with running caps while workers are stopped gracefully one by one and
// replaced (short and long SHUTDOWN_TIMEOUT, tasks finishing and tasks cut
// off). Once every task completed, every task completed exactly once, and
// the dispatcher's state is back to empty at once (not a lease later):
// nothing admitted or running, no run records, no tenant capped, no
// worker registered, cap 0.
func TestRollingDeployLeavesDispatcherIdle(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addr := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	catalog := memstore.New()
	plans := fair.DefaultPlans()
	plans["pro"] = fair.Policy{Weight: 1, MaxRunning: 3, MaxWaiting: 10000}
	d := fair.New(rdb, fair.Config{})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog, Plans: plans}))
	var tenants []tenantctx.Tenant
	for i := range 4 {
		tenants = append(tenants, addTenant(t, catalog, fmt.Sprintf("roll-%d", i), tenantctx.StatusActive))
	}

	var mu sync.Mutex
	done := map[string]int{}
	attempts := map[string]int{}
	h := worker.Handle(func(ctx context.Context, p tasks.InvoicePDF) error {
		key := fmt.Sprintf("%s/%d", p.TenantID, p.InvoiceID)
		mu.Lock()
		attempts[key]++
		mu.Unlock()
		d := time.Duration(5+rand.IntN(30)) * time.Millisecond
		if p.InvoiceID%10 == 0 {
			d = 700 * time.Millisecond // cut off by a short shutdown
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			if p.InvoiceID%20 == 0 {
				time.Sleep(30 * time.Millisecond) // a handler slow to notice
			}
			return ctx.Err()
		}
		mu.Lock()
		done[key]++
		mu.Unlock()
		return nil
	})

	var workers []*rollWorker
	for i := range 3 {
		workers = append(workers, startRollWorker(t, addr, fmt.Sprintf("w%d", i), catalog, h, 200*time.Millisecond))
	}
	defer func() {
		for _, w := range workers {
			w.stop()
		}
	}()

	const perTenant = 120
	load := make(chan error, 1)
	go func() {
		for i := range perTenant {
			for _, tn := range tenants {
				if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: int64(i + 1)}); err != nil {
					load <- err
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		load <- nil
	}()

	// The rolling deploy: stop the oldest worker, start a new one, with a
	// short and a long shutdown timeout in turn.
	for round := range 8 {
		time.Sleep(250 * time.Millisecond)
		old := workers[0]
		workers = workers[1:]
		old.stop()
		shutdown := 200 * time.Millisecond
		if round%2 == 1 {
			shutdown = 2 * time.Second
		}
		workers = append(workers, startRollWorker(t, addr, fmt.Sprintf("w%d", round+3), catalog, h, shutdown))
	}
	if err := <-load; err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 2*time.Minute, "every task completed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) == perTenant*len(tenants)
	})
	mu.Lock()
	for k, n := range done {
		// A task completes once, or, when a shutdown gave up on its
		// handler, which then finished all the same while asynq put the
		// task back, once more (asynq's at-least-once delivery; its run
		// was cut off, so it was attempted more than once).
		if n != 1 && !(n == 2 && attempts[k] > 1) {
			t.Errorf("task %s completed %d times in %d attempts", k, n, attempts[k])
		}
	}
	retried := 0
	for _, n := range attempts {
		if n > 1 {
			retried++
		}
	}
	mu.Unlock()
	t.Logf("tasks run more than once (cut off): %d", retried)

	// Idle: every report sent. Well within a lease (30 s) the dispatcher
	// must say so.
	p := "fair:{" + tasks.QueueDefault + "}:"
	idle := func() string {
		var bad []string
		for _, tn := range tenants {
			st, err := d.Stats(ctx, tn.ID, tasks.QueueDefault)
			if err != nil {
				t.Fatal(err)
			}
			if s := st[0]; s.Waiting+s.Admitted+s.Running+s.Parked != 0 || s.Suspended || s.Paused {
				bad = append(bad, fmt.Sprintf("%s: %+v", tn.Slug, s))
			}
		}
		if n := rdb.HLen(ctx, p+"adm").Val(); n != 0 {
			bad = append(bad, fmt.Sprintf("adm %d: %v", n, rdb.HKeys(ctx, p+"adm").Val()))
		}
		if n := rdb.ZCard(ctx, p+"dl").Val(); n != 0 {
			bad = append(bad, fmt.Sprintf("dl %d", n))
		}
		return fmt.Sprint(bad)
	}
	deadline := time.Now().Add(5 * time.Second)
	for idle() != "[]" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if s := idle(); s != "[]" {
		t.Errorf("5 s after the load ended the dispatcher still counts work: %s", s)
	}
	for _, w := range workers {
		w.stop()
	}
	workers = nil
	o, err := d.Overview(ctx, tasks.QueueDefault, 5)
	if err != nil {
		t.Fatal(err)
	}
	if o.Workers != 0 || o.WorkerSlots != 0 || o.Admitted != 0 || o.Waiting != 0 || o.HeldTenants != 0 {
		t.Errorf("overview after every worker stopped: %+v", o)
	}
	keys := rdb.Keys(ctx, "fair:*").Val()
	sort.Strings(keys)
	for _, k := range keys {
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "zset":
			if n := rdb.ZCard(ctx, k).Val(); n != 0 && k != p+"ready" {
				t.Logf("%s: zset of %d: %v", k, n, rdb.ZRangeWithScores(ctx, k, 0, 10).Val())
			}
		case "string":
			t.Logf("%s = %s", k, rdb.Get(ctx, k).Val())
		case "set":
			t.Logf("%s: set of %d", k, rdb.SCard(ctx, k).Val())
		case "hash":
			if n := rdb.HLen(ctx, k).Val(); n != 0 {
				t.Logf("%s: hash of %d", k, n)
			}
		default:
			t.Logf("%s: %s", k, typ)
		}
	}
	for _, q := range tasks.Queues {
		qp := "fair:{" + q + "}:"
		if c := rdb.Get(ctx, qp+"cap").Val(); c != "" && c != "0" {
			t.Errorf("%scap = %s after every worker left", qp, c)
		}
		if n := rdb.ZCard(ctx, qp+"workers").Val(); n != 0 {
			t.Errorf("%sworkers holds %d after every worker left", qp, n)
		}
	}
}
