package tasks

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestRecoverTurnsPanicIntoRetryableError(t *testing.T) {
	t.Parallel()
	var buf testenv.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	h := Recover(logger)(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		panic("boom in handler")
	}))
	err := h.ProcessTask(context.Background(), asynq.NewTask(TypeInvoicePDF, []byte(`{"tenant_id":"tn_a","invoice_id":1}`)))
	if !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "boom in handler") {
		t.Fatalf("err = %v, want ErrPanic with the panic value", err)
	}
	if IsPermanent(err) {
		t.Errorf("a panic must be retried, got a permanent error")
	}
	if Outcome(err) != OutcomePanic {
		t.Errorf("outcome %s, want panic", Outcome(err))
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
	h := Recover(discardLogger())(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return want }))
	if err := h.ProcessTask(context.Background(), asynq.NewTask("x", nil)); err != want {
		t.Fatalf("err = %v, want %v unchanged", err, want)
	}
}
