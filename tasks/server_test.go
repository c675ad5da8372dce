package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestServerConfig(t *testing.T) {
	t.Parallel()
	cfg := ServerConfig(ServerOptions{Concurrency: 3, Logger: discardLogger()})
	if cfg.Concurrency != 3 || cfg.ShutdownTimeout != DefaultShutdownTimeout ||
		cfg.DelayedTaskCheckInterval != DefaultDelayedTaskCheckInterval || cfg.TaskCheckInterval != DefaultTaskCheckInterval {
		t.Errorf("config %+v", cfg)
	}
	if len(cfg.Queues) != 3 || cfg.Queues[QueueCritical] != 6 || cfg.Queues[QueueDefault] != 3 || cfg.Queues[QueueLow] != 1 {
		t.Errorf("queues %v", cfg.Queues)
	}
	cfg.Queues[QueueLow] = 100
	if QueueWeights[QueueLow] != 1 {
		t.Errorf("ServerConfig shares QueueWeights with the caller")
	}
	if cfg.IsFailure(fmt.Errorf("tenant x is suspended: %w", ErrTenantNotReady)) {
		t.Errorf("not ready counted as a failure")
	}
	if !cfg.IsFailure(errors.New("db down")) || !cfg.IsFailure(Permanentf("gone")) {
		t.Errorf("ordinary and permanent errors must be failures")
	}
	task := asynq.NewTask(TypeInvoicePDF, nil)
	for range 100 {
		d := cfg.RetryDelayFunc(0, fmt.Errorf("x: %w", ErrTenantNotReady), task)
		if d < DefaultNotReadyDelayMin || d > DefaultNotReadyDelayMax {
			t.Fatalf("not-ready delay %v outside %v..%v", d, DefaultNotReadyDelayMin, DefaultNotReadyDelayMax)
		}
	}
	if d := cfg.RetryDelayFunc(0, errors.New("db down"), task); d > time.Minute {
		t.Errorf("first retry after %v; want asynq's backoff (15..45 s)", d)
	}
	// A task recovered from a crashed worker (lease expired) is retried
	// almost at once, even after many retries.
	if d := cfg.RetryDelayFunc(10, fmt.Errorf("recovered: %w", asynq.ErrLeaseExpired), task); d != leaseExpiredDelay {
		t.Errorf("retry delay after an expired lease = %v, want %v", d, leaseExpiredDelay)
	}
	if d := cfg.RetryDelayFunc(10, errors.New("db down"), task); d < time.Minute {
		t.Errorf("11th retry after %v; want exponential backoff", d)
	}
	fixed := ServerConfig(ServerOptions{NotReadyDelayMin: time.Second, NotReadyDelayMax: time.Second})
	if d := fixed.RetryDelayFunc(0, ErrTenantNotReady, task); d != time.Second {
		t.Errorf("fixed not-ready delay %v, want 1s", d)
	}
}

func TestErrorHandlerLogsArchival(t *testing.T) {
	t.Parallel()
	var buf testenv.LogBuffer
	cfg := ServerConfig(ServerOptions{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	task := asynq.NewTask(TypeInvoicePDF, []byte(`{"tenant_id":"tn_a","invoice_id":1}`))
	cfg.ErrorHandler.HandleError(context.Background(), task, Permanentf("tenant tn_a not found"))
	cfg.ErrorHandler.HandleError(context.Background(), task, fmt.Errorf("x: %w", ErrTenantNotReady))
	out := buf.String()
	for _, want := range []string{`"msg":"task archived without retry"`, `"tenant_id":"tn_a"`, `"task_type":"invoice:pdf"`, `"msg":"task waits for its tenant"`, `"level":"DEBUG"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

func TestAsynqLogger(t *testing.T) {
	t.Parallel()
	var buf testenv.LogBuffer
	l := NewAsynqLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	exited := -1
	l.exit = func(code int) { exited = code }
	l.Debug("hidden")
	l.Info("starting ", 3, " workers")
	l.Warn("slow")
	l.Error("redis down")
	l.Fatal("cannot continue")
	out := buf.String()
	for _, want := range []string{`"level":"INFO","msg":"starting 3 workers","component":"asynq"`, `"level":"WARN","msg":"slow"`, `"level":"ERROR","msg":"redis down"`, `"level":"ERROR","msg":"cannot continue"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Errorf("debug line logged at info level")
	}
	if exited != 1 {
		t.Errorf("Fatal exited with %d, want 1", exited)
	}
	if asynqLogLevel(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))) != asynq.DebugLevel {
		t.Errorf("debug slog logger should enable asynq debug logs")
	}
}

func TestOutcome(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]string{
		nil:                                    OutcomeOK,
		errors.New("x"):                        OutcomeError,
		Permanentf("gone"):                     OutcomeSkipRetry,
		fmt.Errorf("w: %w", ErrPanic):          OutcomePanic,
		fmt.Errorf("t: %w", ErrTenantNotReady): OutcomeNotReady,
	} {
		if got := Outcome(err); got != want {
			t.Errorf("Outcome(%v) = %s, want %s", err, got, want)
		}
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	e := Permanentf("once")
	if Permanent(e) != e {
		t.Error("Permanent wraps twice")
	}
}
