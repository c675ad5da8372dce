package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tasks"
)

// leakyError is what a failing task's error can say: SQL and the mail
// server's user and host.
const leakyError = `load invoice: ERROR: relation "tenant_acme.invoices" does not exist (SQLSTATE 42P01); smtp billing:hunter2@mail.internal.example:587`

// TestTaskStateShowsSafeReasons: GET /v1/tasks/{id} never shows a task's
// error message: an archived task shows the reason the worker recorded, a
// task that will be retried says so; a task asynq no longer has is found
// in the tenant's own records (and only the tenant's).
func TestTaskStateShowsSafeReasons(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	globex := b.active(t, "globex")
	ctx := context.Background()

	srv := asynq.NewServer(b.redisOpt, asynq.Config{
		Queues: map[string]int{tasks.QueueDefault: 1}, Concurrency: 2, LogLevel: asynq.FatalLevel,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeInvoicePDF, func(_ context.Context, task *asynq.Task) error {
		var p tasks.InvoicePDF
		if err := json.Unmarshal(task.Payload(), &p); err != nil {
			return err
		}
		if p.InvoiceID == 1 {
			return fmt.Errorf("%s: %w", leakyError, asynq.SkipRetry)
		}
		return errors.New(leakyError)
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	ids := map[int64]string{}
	for _, inv := range []int64{1, 2} {
		r := b.do(t, request{method: http.MethodPost, host: acme.host(), path: fmt.Sprintf("/v1/invoices/%d/pdf", inv), bearer: acme.key})
		wantStatus(t, r, http.StatusAccepted)
		ids[inv] = r.json(t)["task_id"].(string)
	}
	// The worker records the reason of the archive (worker.PublicReason).
	if err := b.records.Put(ctx, acme.ID, tasks.TaskRecord{TaskID: ids[1], Type: tasks.TypeInvoicePDF, Queue: tasks.QueueDefault, Reason: "invoice not found"}); err != nil {
		t.Fatal(err)
	}
	state := func(tn tenant, id string) response {
		return b.do(t, request{method: http.MethodGet, host: tn.host(), path: "/v1/tasks/" + id, bearer: tn.key})
	}
	waitFor := func(id, want string) map[string]any {
		deadline := time.Now().Add(time.Minute)
		for {
			r := state(acme, id)
			wantStatus(t, r, http.StatusOK)
			if strings.Contains(string(r.body), "SQLSTATE") || strings.Contains(string(r.body), "hunter2") || strings.Contains(string(r.body), "mail.internal") {
				t.Fatalf("task state shows the error message: %s", r.body)
			}
			if m := r.json(t); m["state"] == want {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s not %s: %s", id, want, r.body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if m := waitFor(ids[1], "archived"); m["last_error"] != "invoice not found" {
		t.Errorf("archived task: last_error %q, want the recorded reason", m["last_error"])
	}
	if m := waitFor(ids[2], "retry"); m["last_error"] != "temporary failure, will be retried" {
		t.Errorf("task to be retried: last_error %q", m["last_error"])
	}
	// The operators still see the error (dashboard, inspector).
	if ti := b.taskInfo(t, tasks.QueueDefault, ids[1]); !strings.Contains(ti.LastErr, "SQLSTATE 42P01") {
		t.Errorf("asynq lost the error: %q", ti.LastErr)
	}

	// asynq no longer has the archived task (evicted by the archive's cap,
	// or expired): the tenant's record answers, for that tenant only.
	if err := b.inspector.DeleteTask(tasks.QueueDefault, ids[1]); err != nil {
		t.Fatal(err)
	}
	r := state(acme, ids[1])
	wantStatus(t, r, http.StatusOK)
	if m := r.json(t); m["state"] != "archived" || m["last_error"] != "invoice not found" || m["type"] != tasks.TypeInvoicePDF || m["task_id"] != ids[1] {
		t.Errorf("task only the record has: %s", r.body)
	}
	wantStatus(t, state(globex, ids[1]), http.StatusNotFound)
}
