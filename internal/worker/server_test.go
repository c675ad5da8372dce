package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

func TestServerConfig(t *testing.T) {
	t.Parallel()
	cfg := worker.ServerConfig(worker.ServerOptions{Concurrency: 3, Logger: discardLogger()})
	if cfg.Concurrency != 3 || cfg.ShutdownTimeout != worker.DefaultShutdownTimeout ||
		cfg.DelayedTaskCheckInterval != worker.DefaultDelayedTaskCheckInterval || cfg.TaskCheckInterval != worker.DefaultTaskCheckInterval {
		t.Errorf("config %+v", cfg)
	}
	if len(cfg.Queues) != 3 || cfg.Queues[tasks.QueueCritical] != 6 || cfg.Queues[tasks.QueueDefault] != 3 || cfg.Queues[tasks.QueueLow] != 1 {
		t.Errorf("queues %v", cfg.Queues)
	}
	cfg.Queues[tasks.QueueLow] = 100
	if tasks.QueueWeights[tasks.QueueLow] != 1 {
		t.Errorf("worker.ServerConfig shares tasks.QueueWeights with the caller")
	}
	layout, err := tasks.NewLayout(3, 4)
	if err != nil {
		t.Fatal(err)
	}
	sharded := worker.ServerConfig(worker.ServerOptions{Layout: layout, Logger: discardLogger()})
	sums := map[string]int{}
	for q, w := range sharded.Queues {
		c, _ := tasks.ClassOf(q)
		sums[c] += w
	}
	// Every served shard (4 per class), each with its class's weight.
	if len(sharded.Queues) != 12 || sums[tasks.QueueCritical] != 24 || sums[tasks.QueueDefault] != 12 || sums[tasks.QueueLow] != 4 {
		t.Errorf("sharded queues %v: class sums %v", sharded.Queues, sums)
	}
	// A worker dedicated to some classes serves every shard of those only,
	// with their weights, and registers those with the dispatcher.
	dedicated := worker.ServerOptions{Layout: layout, Classes: []string{tasks.QueueLow, tasks.QueueDefault}, Logger: discardLogger()}
	var want []string
	wantWeights := map[string]int{}
	for _, c := range []string{tasks.QueueLow, tasks.QueueDefault} {
		for i := range 4 {
			want = append(want, tasks.ShardQueue(c, i))
			wantWeights[tasks.ShardQueue(c, i)] = tasks.QueueWeights[c]
		}
	}
	if dq := worker.ServerConfig(dedicated).Queues; !maps.Equal(dq, wantWeights) {
		t.Errorf("queues of a worker serving low and default: %v, want %v", dq, wantWeights)
	}
	if got := dedicated.ServedQueues(); !slices.Equal(got, want) {
		t.Errorf("ServedQueues = %v, want %v", got, want)
	}
	if got := (worker.ServerOptions{}).ServedQueues(); !slices.Equal(got, tasks.Queues) {
		t.Errorf("ServedQueues without classes = %v, want every class", got)
	}
	if cfg.IsFailure(fmt.Errorf("tenant x is suspended: %w", worker.ErrTenantNotReady)) {
		t.Errorf("not ready counted as a failure")
	}
	if !cfg.IsFailure(errors.New("db down")) || !cfg.IsFailure(worker.Permanentf("gone")) {
		t.Errorf("ordinary and permanent errors must be failures")
	}
	task := asynq.NewTask(tasks.TypeInvoicePDF, nil)
	for range 100 {
		d := cfg.RetryDelayFunc(0, fmt.Errorf("x: %w", worker.ErrTenantNotReady), task)
		if d < worker.DefaultNotReadyDelayMin || d > worker.DefaultNotReadyDelayMax {
			t.Fatalf("not-ready delay %v outside %v..%v", d, worker.DefaultNotReadyDelayMin, worker.DefaultNotReadyDelayMax)
		}
	}
	if d := cfg.RetryDelayFunc(0, errors.New("db down"), task); d > time.Minute {
		t.Errorf("first retry after %v; want asynq's backoff (15..45 s)", d)
	}
	// A task recovered from a crashed worker (lease expired) is retried
	// almost at once, even after many retries.
	if d := cfg.RetryDelayFunc(10, fmt.Errorf("recovered: %w", asynq.ErrLeaseExpired), task); d != worker.LeaseExpiredDelay {
		t.Errorf("retry delay after an expired lease = %v, want %v", d, worker.LeaseExpiredDelay)
	}
	if d := cfg.RetryDelayFunc(10, errors.New("db down"), task); d < time.Minute {
		t.Errorf("11th retry after %v; want exponential backoff", d)
	}
	fixed := worker.ServerConfig(worker.ServerOptions{NotReadyDelayMin: time.Second, NotReadyDelayMax: time.Second})
	if d := fixed.RetryDelayFunc(0, worker.ErrTenantNotReady, task); d != time.Second {
		t.Errorf("fixed not-ready delay %v, want 1s", d)
	}
}

func TestErrorHandlerLogsArchival(t *testing.T) {
	t.Parallel()
	var buf testenv.LogBuffer
	cfg := worker.ServerConfig(worker.ServerOptions{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	task := asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"tn_a","invoice_id":1}`))
	cfg.ErrorHandler.HandleError(context.Background(), task, worker.Permanentf("tenant tn_a not found"))
	// A task of a held tenant: asynq lets it go (RevokeTask), it comes
	// back on the tenant's release.
	cfg.ErrorHandler.HandleError(context.Background(), task, fmt.Errorf("x: %w", worker.ErrTenantHeld))
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
	l := worker.NewAsynqLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	exited := -1
	worker.SetExit(l, func(code int) { exited = code })
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
	if worker.AsynqLogLevel(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))) != asynq.DebugLevel {
		t.Errorf("debug slog logger should enable asynq debug logs")
	}
}

func TestOutcome(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]string{
		nil:                                  worker.OutcomeOK,
		errors.New("x"):                      worker.OutcomeError,
		worker.Permanentf("gone"):            worker.OutcomeSkipRetry,
		fmt.Errorf("w: %w", worker.ErrPanic): worker.OutcomePanic,
		fmt.Errorf("t: %w", worker.ErrTenantNotReady): worker.OutcomeNotReady,
	} {
		if got := worker.Outcome(err); got != want {
			t.Errorf("worker.Outcome(%v) = %s, want %s", err, got, want)
		}
	}
	if worker.Permanent(nil) != nil {
		t.Error("worker.Permanent(nil) != nil")
	}
	e := worker.Permanentf("once")
	if worker.Permanent(e) != e {
		t.Error("worker.Permanent wraps twice")
	}
}
