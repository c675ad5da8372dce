package worker_test

import (
	"context"
	"strings"
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

// parkCall is one ParkRun call: the run it named, and the run of the
// task's admission record when it was made.
type parkCall struct{ run, recorded string }

// recordingParker records the ParkRun calls of the chain and hands them
// on to the dispatcher.
type recordingParker struct {
	*fair.Dispatcher
	rdb   *redis.Client
	mu    sync.Mutex
	calls map[string]parkCall
}

func (p *recordingParker) ParkRun(ctx context.Context, queue, taskID, tenantID, typ, run string) (bool, error) {
	meta, _ := p.rdb.HGet(ctx, "fair:{"+queue+"}:adm", taskID).Result()
	p.mu.Lock()
	p.calls[taskID] = parkCall{run: run, recorded: meta[strings.LastIndexByte(meta, '\t')+1:]}
	p.mu.Unlock()
	return p.Dispatcher.ParkRun(ctx, queue, taskID, tenantID, typ, run)
}

func (p *recordingParker) call(id string) (parkCall, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.calls[id]
	return c, ok
}

// TestParkNamesTheRun: through the production chain, a suspended tenant's
// task is parked under the run the dispatcher recorded for its attempt, so
// that a park that comes late cannot end a later run of the task id: the
// run its admission wrote into its headers on a first attempt; for a
// retry, whose message still names its admission's run, the run the gate
// gives it (asked first), which its report then names too.
func TestParkNamesTheRun(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	catalog := memstore.New()
	ins := asynq.NewInspectorFromRedisClient(rdb)
	d := fair.New(rdb, fair.Config{})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), ins, discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}))
	tn := addTenant(t, catalog, "park-run", tenantctx.StatusActive)

	// Invoice 1's task is admitted; invoice 2's failed twice before, under
	// a run its message still names, and asynq's forwarder puts it back
	// into the pending list, past the dispatcher.
	res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	admitted := res.Info.ID
	retried := pushRetriedRender(t, rdb, tn.ID, 2)

	// The tenant is suspended before a worker takes them: both are parked
	// (the dispatcher does not hold the tenant here, so each park answers
	// that it is free, and the attempt is retried; what matters is the run
	// it names).
	if _, err := catalog.SetStatus(ctx, tn.ID, tenantctx.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	parker := &recordingParker{Dispatcher: d, rdb: rdb, calls: map[string]parkCall{}}
	rep := &forwarding{to: d.NewReporter(discardLogger())}
	ran := make(chan string, 2)
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: rep, Parker: parker}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			id, _ := asynq.GetTaskID(ctx)
			ran <- id
			return nil
		}),
	})
	srv := asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{Concurrency: 2, Logger: discardLogger(), ShutdownTimeout: 5 * time.Second}))
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		rep.to.Close(context.Background())
	})

	testenv.WaitFor(t, time.Minute, "both tasks parked and reported", func() bool {
		_, ok1 := parker.call(admitted)
		_, ok2 := parker.call(retried)
		return ok1 && ok2 && len(rep.all()) == 2
	})
	if len(ran) > 0 {
		t.Fatalf("the handler of %s ran for a suspended tenant", <-ran)
	}
	for _, id := range []string{admitted, retried} {
		c, _ := parker.call(id)
		if c.run == "" || c.run == "stale" || c.run != c.recorded {
			t.Errorf("the park of %s named run %q; the dispatcher recorded run %q for its attempt", id, c.run, c.recorded)
		}
	}
	for _, r := range rep.all() {
		if c, _ := parker.call(r.TaskID); r.Run != c.run {
			t.Errorf("the report of %s names run %q, its park %q: both name the attempt's run", r.TaskID, r.Run, c.run)
		}
	}
}
