package worker_test

import (
	"context"
	"encoding/json"
	"errors"
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

// TestAsynqTaskLinesCarryTheTask: asynq's own lines about a task (here
// "Retry exhausted for task id=..." when a task is archived, on a real
// asynq server through the production chain) carry task_id, task_type and
// tenant_id like every other task line, so that an operator filtering the
// log by tenant sees them.
func TestAsynqTaskLinesCarryTheTask(t *testing.T) {
	t.Parallel()
	redis := newRedis(t)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "asynq-lines", tenantctx.StatusActive)
	var buf testenv.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))

	mux := asynq.NewServeMux()
	mux.Use(worker.Chain(worker.MuxOptions{Logger: logger, Catalog: catalog})...)
	mux.HandleFunc(tasks.TypeInvoicePDF, func(ctx context.Context, _ *asynq.Task) error {
		return errors.New("render failed")
	})
	startServer(t, redis, mux, worker.ServerOptions{Logger: logger})

	client := asynq.NewClient(redis)
	t.Cleanup(func() { _ = client.Close() })
	inspector := asynq.NewInspector(redis)
	t.Cleanup(func() { _ = inspector.Close() })
	id := "invoice:pdf:" + tn.ID + ":1"
	payload := fmt.Sprintf(`{"tenant_id":%q,"invoice_id":1}`, tn.ID)
	if _, err := client.Enqueue(asynq.NewTask(tasks.TypeInvoicePDF, []byte(payload)), asynq.TaskID(id),
		asynq.Queue(tasks.QueueDefault), asynq.MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitTaskState(t, inspector, tasks.QueueDefault, id, asynq.TaskStateArchived)

	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "Retry exhausted") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	about := 0
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line is not JSON: %v\n%s", err, line)
		}
		if rec["task_id"] != id && !strings.Contains(fmt.Sprint(rec["msg"]), id) {
			continue
		}
		about++
		if rec["task_id"] != id || rec["tenant_id"] != tn.ID || rec["task_type"] != tasks.TypeInvoicePDF {
			t.Errorf("a line about task %s lacks its task_id, tenant_id or task_type:\n%s", id, line)
		}
	}
	if about < 3 {
		t.Errorf("%d lines about the task, want its attempt, its archive and asynq's own:\n%s", about, buf.String())
	}
}

// TestAsynqLeaseLineCarriesTheTask: asynq's heartbeat warns, while the
// task still runs, that it could not extend the lease of a task whose
// lease had expired ("Lease reset failed for <id>; ...": asynq's recoverer
// will run that task again). The line names the task without asynq's
// usual "task id=", and it carries the task's task_id, task_type and
// tenant_id all the same, as asynq's other lines about a task do.
func TestAsynqLeaseLineCarriesTheTask(t *testing.T) {
	t.Parallel()
	var buf testenv.LogBuffer
	l := worker.NewAsynqLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	const tenantID = "tn_6oblsbkh6jajy3lnivzouf6mke"
	id := "invoice:pdf:" + tenantID + ":7"
	// As asynq's heartbeat formats it (heartbeat.go, asynq v0.26).
	l.Warn(fmt.Sprintf("Lease reset failed for %s; lease deadline: %v", id, time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)))

	var rec map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &rec); err != nil {
		t.Fatalf("line is not JSON: %v\n%s", err, buf.String())
	}
	if rec["task_id"] != id || rec["task_type"] != tasks.TypeInvoicePDF || rec["tenant_id"] != tenantID {
		t.Errorf("asynq's lease line lacks the task's task_id, task_type or tenant_id:\n%s", buf.String())
	}
}

// TestWaitingTaskArchivedOnItsLastAttemptIsLoggedAsArchived: a task that
// meets a not-ready wait (here: its tenant still provisioning) on its last
// allowed attempt and that is not kept (KeepLastAttempt could not keep it,
// or has no Redis) is archived by asynq without having run. The error
// handler says so at error level ("task archived: retries exhausted"), as
// for any task archived after its retries, instead of "task waits for its
// tenant" at debug, which told an operator the task would come back.
func TestWaitingTaskArchivedOnItsLastAttemptIsLoggedAsArchived(t *testing.T) {
	t.Parallel()
	redis := newRedis(t)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "still-provisioning", tenantctx.StatusProvisioning)
	var buf testenv.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	mux := asynq.NewServeMux()
	mux.Use(worker.Chain(worker.MuxOptions{Logger: logger, Catalog: catalog})...)
	mux.HandleFunc(tasks.TypeInvoicePDF, func(context.Context, *asynq.Task) error { return nil })
	startServer(t, redis, mux, worker.ServerOptions{Logger: logger})

	client := asynq.NewClient(redis)
	t.Cleanup(func() { _ = client.Close() })
	inspector := asynq.NewInspector(redis)
	t.Cleanup(func() { _ = inspector.Close() })
	id := "invoice:pdf:" + tn.ID + ":1"
	payload := fmt.Sprintf(`{"tenant_id":%q,"invoice_id":1}`, tn.ID)
	if _, err := client.Enqueue(asynq.NewTask(tasks.TypeInvoicePDF, []byte(payload)), asynq.TaskID(id),
		asynq.Queue(tasks.QueueDefault), asynq.MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitTaskState(t, inspector, tasks.QueueDefault, id, asynq.TaskStateArchived)

	testenv.WaitFor(t, 5*time.Second, "the error handler's line", func() bool {
		return strings.Contains(buf.String(), `"max_retry"`)
	})
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line is not JSON: %v\n%s", err, line)
		}
		if _, ok := rec["max_retry"]; !ok {
			continue // not the error handler's
		}
		if rec["msg"] != "task archived: retries exhausted" || rec["level"] != "ERROR" || rec["task_id"] != id || rec["tenant_id"] != tn.ID {
			t.Errorf("the error handler's line about the archived task:\n%s\nwant %q at ERROR naming the task", line, "task archived: retries exhausted")
		}
	}
}
