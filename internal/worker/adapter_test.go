package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// handle is worker.Handle(fn) behind the envelope, as the chain runs it.
func handle[P tasks.Payload](fn func(context.Context, P) error) asynq.Handler {
	return worker.DecodeEnvelope()(worker.Handle(fn))
}

func TestHandleDecodes(t *testing.T) {
	t.Parallel()
	var got tasks.InvoicePDF
	h := handle(func(_ context.Context, p tasks.InvoicePDF) error { got = p; return nil })
	// Unknown fields are ignored: a newer producer may add some.
	err := h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"tn_a","invoice_id":7,"added_later":true}`)))
	if err != nil || got != (tasks.InvoicePDF{TenantID: "tn_a", InvoiceID: 7}) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestHandleRejectsPermanently(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, typ, payload, want string
	}{
		{"wrong type", tasks.TypeInvoiceReminder, `{"tenant_id":"tn_a","invoice_id":7}`, "got a task of type"},
		{"prefix type", tasks.TypeInvoicePDF + "x", `{"tenant_id":"tn_a","invoice_id":7}`, "got a task of type"},
		{"not json", tasks.TypeInvoicePDF, `{"tenant_id":`, "decode invoice:pdf payload"},
		{"wrong field type", tasks.TypeInvoicePDF, `{"tenant_id":"tn_a","invoice_id":"7"}`, "decode invoice:pdf payload"},
		{"empty", tasks.TypeInvoicePDF, ``, "decode invoice:pdf payload"},
		{"invalid values", tasks.TypeInvoicePDF, `{"tenant_id":"tn_a","invoice_id":0}`, "invoice_id must be positive"},
		{"null", tasks.TypeInvoicePDF, `null`, "tenant_id"},
	}
	for _, c := range cases {
		ran := false
		h := handle(func(context.Context, tasks.InvoicePDF) error { ran = true; return nil })
		err := h.ProcessTask(context.Background(), asynq.NewTask(c.typ, []byte(c.payload)))
		if ran || !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ran=%v err=%v; want SkipRetry mentioning %q", c.name, ran, err, c.want)
		}
		// A payload that does not decode, or whose values are invalid, is
		// an invalid task to its tenant, not a refused one.
		if strings.HasPrefix(c.want, "decode ") || c.name == "invalid values" {
			if got := worker.PublicReason(err); got != worker.ReasonInvalidTask {
				t.Errorf("%s: public reason %q, want %q", c.name, got, worker.ReasonInvalidTask)
			}
		}
	}
	// A reminder queued for year 0, which Go parses and PostgreSQL refuses,
	// is refused at once rather than failing in SQL on every retry.
	ran := false
	h := handle(func(context.Context, tasks.InvoiceReminder) error { ran = true; return nil })
	err := h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeInvoiceReminder, []byte(`{"tenant_id":"tn_a","invoice_id":7,"day":"0000-01-01"}`)))
	if ran || !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "day must be in year 0001 or later") {
		t.Errorf("reminder for day 0000-01-01: ran=%v err=%v; want SkipRetry", ran, err)
	}
}

func TestWriteResultOutsideHandler(t *testing.T) {
	t.Parallel()
	if err := worker.WriteResult(context.Background(), 1); !errors.Is(err, worker.ErrNoResultWriter) {
		t.Fatalf("err = %v, want ErrNoResultWriter", err)
	}
}

// TestHandleOnServer: through a real server, an undecodable payload is
// archived after one attempt, and a handler's WriteResult is the task's
// result.
func TestHandleOnServer(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	redis := newRedis(t)
	_, inspector := newTestEnqueuer(t, redis)
	var runs atomic.Int64
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeSweepOverdue, handle(func(ctx context.Context, p tasks.SweepOverdue) error {
		runs.Add(1)
		return worker.WriteResult(ctx, map[string]int64{"tick": p.Tick})
	}))
	client := asynq.NewClient(redis)
	t.Cleanup(func() { _ = client.Close() })
	bad, err := client.EnqueueContext(ctx, asynq.NewTask(tasks.TypeSweepOverdue, []byte(`{"tick":"soon"}`), asynq.Queue(tasks.QueueLow), asynq.MaxRetry(25)))
	if err != nil {
		t.Fatal(err)
	}
	good, err := client.EnqueueContext(ctx, asynq.NewTask(tasks.TypeSweepOverdue, []byte(`{"tick":1700000000}`), asynq.Queue(tasks.QueueLow), asynq.Retention(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, redis, mux, worker.ServerOptions{Concurrency: 2})

	info := testenv.WaitTaskState(t, inspector, tasks.QueueLow, bad.ID, asynq.TaskStateArchived)
	if info.Retried != 0 || !strings.Contains(info.LastErr, "decode sweep:overdue payload") {
		t.Errorf("undecodable task: retried=%d last_err=%q", info.Retried, info.LastErr)
	}
	info = testenv.WaitTaskState(t, inspector, tasks.QueueLow, good.ID, asynq.TaskStateCompleted)
	var result map[string]int64
	if err := json.Unmarshal(info.Result, &result); err != nil || result["tick"] != 1700000000 {
		t.Errorf("result %s (%v), want tick 1700000000", info.Result, err)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
}
