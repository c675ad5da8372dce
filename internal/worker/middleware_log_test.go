package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// logLines decodes the JSON log lines with msg "task finished".
func logLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "task finished" {
			lines = append(lines, m)
		}
	}
	return lines
}

// TestLogWritesTaskAttributes runs tasks through a real server and checks
// the log line of each: task_id, task_type, tenant_id, queue, retry,
// duration and outcome.
func TestLogWritesTaskAttributes(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	redis := newRedis(t)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "logged-co", tenantctx.StatusActive)
	var buf testenv.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))

	mux := worker.MuxOf(worker.MuxOptions{Logger: logger, Catalog: catalog}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, p tasks.InvoicePDF) error {
			worker.LoggerFromContext(ctx).InfoContext(ctx, "rendering")
			return nil
		}),
		tasks.TypeSweepOverdue: worker.Handle(func(context.Context, tasks.SweepOverdue) error { return nil }),
	})

	enq, inspector := newTestEnqueuer(t, redis)
	pdf, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 3})
	if err != nil {
		t.Fatal(err)
	}
	sweep, err := enq.Enqueue(ctx, tasks.SweepOverdue{Tick: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: "tn_gone", InvoiceID: 3})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, redis, mux, worker.ServerOptions{Concurrency: 1})
	testenv.WaitTaskState(t, inspector, tasks.QueueDefault, pdf.Info.ID, asynq.TaskStateCompleted)
	testenv.WaitTaskState(t, inspector, tasks.QueueLow, sweep.Info.ID, asynq.TaskStateCompleted)
	testenv.WaitTaskState(t, inspector, tasks.QueueDefault, unknown.Info.ID, asynq.TaskStateArchived)

	out := buf.String()
	byID := map[string]map[string]any{}
	for _, l := range logLines(t, out) {
		byID[fmt.Sprint(l["task_id"])] = l
	}
	want := map[string]map[string]any{
		pdf.Info.ID:     {"task_type": tasks.TypeInvoicePDF, "tenant_id": tn.ID, "queue": tasks.QueueDefault, "outcome": worker.OutcomeOK, "level": "INFO"},
		sweep.Info.ID:   {"task_type": tasks.TypeSweepOverdue, "queue": tasks.QueueLow, "outcome": worker.OutcomeOK},
		unknown.Info.ID: {"task_type": tasks.TypeInvoicePDF, "tenant_id": "tn_gone", "outcome": worker.OutcomeSkipRetry, "level": "ERROR"},
	}
	for id, fields := range want {
		line, ok := byID[id]
		if !ok {
			t.Errorf("no log line for task %s in:\n%s", id, out)
			continue
		}
		for k, v := range fields {
			if line[k] != v {
				t.Errorf("task %s: %s = %v, want %v", id, k, line[k], v)
			}
		}
		if _, ok := line["duration"]; !ok {
			t.Errorf("task %s: no duration", id)
		}
		if line["retry"] != float64(0) {
			t.Errorf("task %s: retry = %v, want 0", id, line["retry"])
		}
	}
	if _, ok := byID[sweep.Info.ID]["tenant_id"]; ok {
		t.Errorf("system task logged with a tenant_id")
	}
	if !strings.Contains(byID[unknown.Info.ID]["error"].(string), "not found") {
		t.Errorf("error line lacks the reason: %v", byID[unknown.Info.ID]["error"])
	}
	// The handler's own line carries the task attributes.
	if !strings.Contains(out, `"msg":"rendering","task_id":"`+pdf.Info.ID+`","task_type":"invoice:pdf","tenant_id":"`+tn.ID+`"`) {
		t.Errorf("handler log line lacks task attributes:\n%s", out)
	}
}

// TestLogPanicOutcome: a panic unwinding through Log is logged as outcome
// panic before Recover turns it into an error.
func TestLogPanicOutcome(t *testing.T) {
	t.Parallel()
	var buf testenv.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	h := worker.Recover(discardLogger())(worker.Log(logger)(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { panic("x") })))
	if err := h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"tn_a","invoice_id":1}`))); err == nil {
		t.Fatal("no error from a panic")
	}
	lines := logLines(t, buf.String())
	if len(lines) != 1 || lines[0]["outcome"] != worker.OutcomePanic || lines[0]["tenant_id"] != "tn_a" {
		t.Fatalf("lines %v, want one with outcome panic", lines)
	}
}
