package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestTaskCutOffByShutdownIsNotAnError: a task still running when a
// worker's SHUTDOWN_TIMEOUT ends goes back to its queue (README,
// SHUTDOWN_TIMEOUT): nothing failed, no retry is counted, and another
// worker runs it. Its attempt's line says so (outcome cut_off) at warn,
// not at error with outcome error, so that every deploy that cuts a long
// render does not page for a failure that was none.
func TestTaskCutOffByShutdownIsNotAnError(t *testing.T) {
	t.Parallel()
	redis := newRedis(t)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "shutdown-cut", tenantctx.StatusActive)
	var buf testenv.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))

	started := make(chan struct{}, 1)
	mux := asynq.NewServeMux()
	mux.Use(worker.Chain(worker.MuxOptions{Logger: logger, Catalog: catalog})...)
	mux.HandleFunc(tasks.TypeInvoicePDF, func(ctx context.Context, _ *asynq.Task) error {
		started <- struct{}{}
		<-ctx.Done() // a long render, cut by the shutdown
		return fmt.Errorf("render: %w", ctx.Err())
	})
	srv := startServer(t, redis, mux, worker.ServerOptions{Logger: logger, Concurrency: 1, ShutdownTimeout: 200 * time.Millisecond})

	client := asynq.NewClient(redis)
	t.Cleanup(func() { _ = client.Close() })
	inspector := asynq.NewInspector(redis)
	t.Cleanup(func() { _ = inspector.Close() })
	id := "invoice:pdf:" + tn.ID + ":1"
	payload := fmt.Sprintf(`{"tenant_id":%q,"invoice_id":1}`, tn.ID)
	if _, err := client.Enqueue(asynq.NewTask(tasks.TypeInvoicePDF, []byte(payload)), asynq.TaskID(id), asynq.Queue(tasks.QueueDefault)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("the render did not start")
	}
	srv.Shutdown()
	testenv.WaitTaskState(t, inspector, tasks.QueueDefault, id, asynq.TaskStatePending)
	if ti, err := inspector.GetTaskInfo(tasks.QueueDefault, id); err != nil || ti.Retried != 0 {
		t.Fatalf("task after the shutdown: %+v, %v; want it back in pending, no retry counted", ti, err)
	}
	var line map[string]any
	testenv.WaitFor(t, 10*time.Second, "the attempt's line", func() bool {
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "task finished" && rec["task_id"] == id {
				line = rec
				return true
			}
		}
		return false
	})
	if line["level"] != "WARN" || line["outcome"] != worker.OutcomeCutOff {
		t.Errorf("the attempt cut by the shutdown is logged at %v with outcome %v, want WARN and %s: %v", line["level"], line["outcome"], worker.OutcomeCutOff, line)
	}
}
