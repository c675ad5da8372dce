package worker_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// lateForget holds the enqueuer's record commands until the worker has
// written its record of the task: the order a fast worker (an idle one is
// woken at once) and a busy enqueue service can take.
type lateForget struct{ until func() bool }

func (lateForget) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}
func (h lateForget) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := strings.ToLower(cmd.Name()); n == "evalsha" || n == "eval" {
			deadline := time.Now().Add(5 * time.Second)
			for !h.until() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
		}
		return next(ctx, cmd)
	}
}
func (lateForget) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestNewTaskArchivedFastKeepsItsRecord: Enqueue forgets the old
// record of a task id after the new task is in asynq. When a worker takes
// and archives the new task before that forget lands, the forget deletes
// the new task's record: P15's per-tenant record of an archived task is
// lost, and once asynq trims its archive the tenant's GET says 404.
func TestNewTaskArchivedFastKeepsItsRecord(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	redisOpt := newRedis(t)
	rdbW := redis.NewClient(&redis.Options{Addr: redisOpt.Addr})
	rdbE := redis.NewClient(&redis.Options{Addr: redisOpt.Addr})
	t.Cleanup(func() { _ = rdbW.Close(); _ = rdbE.Close() })
	workerRecords := tasks.NewTaskRecords(rdbW, tasks.TaskRecordsOptions{})
	enqRecords := tasks.NewTaskRecords(rdbE, tasks.TaskRecordsOptions{})

	h := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		return worker.Permanentf("invoice 7 not found: %w", invoice.ErrNotFound)
	})
	startServer(t, redisOpt, h, worker.ServerOptions{Concurrency: 1, Records: workerRecords})

	tenant := tenantctx.NewID()
	id := "invoice:pdf:" + tenant + ":7"
	rdbE.AddHook(lateForget{until: func() bool { _, err := workerRecords.Get(ctx, tenant, id); return err == nil }})
	enq, _ := newTestEnqueuer(t, redisOpt)
	enq = enq.WithTaskRecords(enqRecords)

	if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tenant, InvoiceID: 7}); err != nil {
		t.Fatal(err)
	}
	// asynq calls the error handler, which writes the record, before it
	// archives the task: once archived, the record is there, unless the
	// forget deleted it (on a loaded machine the worker may take the task
	// well after Enqueue returned, so no fixed wait would do).
	testenv.WaitFor(t, time.Minute, "the task archived", func() bool { return state(t, rdbW, id) == "archived" })
	if _, err := workerRecords.Get(ctx, tenant, id); err != nil {
		t.Fatalf("the archived task's record is gone: %v", err)
	}
}
