package worker_test

import (
	"context"
	"encoding/json"
	"sync"
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

// reportsKept is a CostReporter that keeps what it is told.
type reportsKept struct {
	mu   sync.Mutex
	reps []fair.Report
}

func (r *reportsKept) Report(rep fair.Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reps = append(r.reps, rep)
}

func (r *reportsKept) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reps)
}

// TestAttemptPastItsDeadlineLeavesAsynqsHeadersAlone: once a task's
// deadline passes, asynq settles the attempt at once (its error handler,
// then the retry or the archive, which encode the task's message with its
// headers) while the handler is still returning. ReportCost dropped the
// run header from that very map as the failed attempt returned: a map
// written by the handler's goroutine while asynq's reads it (run with
// -race, which reports it; without it the runtime may stop the worker
// with "concurrent map iteration and map write"). A deadline counts as a
// failure, so the retry asks the gate whatever its message says.
func TestAttemptPastItsDeadlineLeavesAsynqsHeadersAlone(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "deadline-headers", tenantctx.StatusActive)
	rep := new(reportsKept)
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: rep}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			<-ctx.Done()
			return ctx.Err()
		}),
	})
	startServerOn(t, rdb, mux, worker.ServerOptions{Concurrency: 4})
	client := asynq.NewClientFromRedisClient(rdb)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	const n = 4
	var ids []string
	for i := range n {
		p := tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: int64(i + 1)}
		payload, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		// As admitted by fair dispatch: the message names its run.
		task := asynq.NewTaskWithHeaders(p.TypeName(), payload, map[string]string{fair.RunHeader: "run-1"})
		info, err := client.EnqueueContext(ctx, task, asynq.Queue(tasks.QueueDefault), asynq.TaskID(p.Spec().TaskID),
			asynq.MaxRetry(0), asynq.Timeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	for _, id := range ids {
		testenv.WaitTaskState(t, ins, tasks.QueueDefault, id, asynq.TaskStateArchived)
	}
	testenv.WaitFor(t, time.Minute, "every attempt reported", func() bool { return rep.count() == n })
}
