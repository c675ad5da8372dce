package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

func TestRecoverTurnsPanicIntoRetryableError(t *testing.T) {
	t.Parallel()
	var buf testenv.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	h := worker.Recover(logger)(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		panic("boom in handler")
	}))
	err := h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"tn_a","invoice_id":1}`)))
	if !errors.Is(err, worker.ErrPanic) || !strings.Contains(err.Error(), "boom in handler") {
		t.Fatalf("err = %v, want worker.ErrPanic with the panic value", err)
	}
	if worker.IsPermanent(err) {
		t.Errorf("a panic must be retried, got a permanent error")
	}
	if worker.Outcome(err) != worker.OutcomePanic {
		t.Errorf("outcome %s, want panic", worker.Outcome(err))
	}
	out := buf.String()
	for _, want := range []string{`"level":"ERROR"`, `"panic":"boom in handler"`, `"stack":"goroutine`, `TestRecoverTurnsPanicIntoRetryableError`, `"tenant_id":"tn_a"`, `"task_type":"invoice:pdf"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

func TestRecoverPassesResults(t *testing.T) {
	t.Parallel()
	want := errors.New("plain")
	h := worker.Recover(discardLogger())(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return want }))
	if err := h.ProcessTask(context.Background(), asynq.NewTask("x", nil)); err != want {
		t.Fatalf("err = %v, want %v unchanged", err, want)
	}
}
