package workerapp

import (
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// TestNotReadyDelayFollowsConfig: the worker's asynq server waits
// NOT_READY_DELAY_MIN to _MAX before it tries again a task that met a
// not-ready wait (and only such a task), and the defaults config applies
// when they are unset are the worker's own (config does not import the
// worker).
func TestNotReadyDelayFollowsConfig(t *testing.T) {
	t.Parallel()
	task := asynq.NewTask(tasks.TypeInvoicePDF, nil)
	notReady := fmt.Errorf("tenant tn_a is provisioning: %w", worker.ErrTenantNotReady)
	delays := func(env map[string]string) (lo, hi time.Duration) {
		t.Helper()
		env["DATABASE_URL"] = "postgres://app@db/inv"
		cfg, err := config.FromEnv(func(name string) string { return env[name] })
		if err != nil {
			t.Fatal(err)
		}
		retryDelay := worker.ServerConfig(serverOptions(cfg)).RetryDelayFunc
		lo, hi = time.Duration(1<<63-1), 0
		for range 200 {
			d := retryDelay(0, notReady, task)
			lo, hi = min(lo, d), max(hi, d)
		}
		return lo, hi
	}
	if lo, hi := delays(map[string]string{"NOT_READY_DELAY_MIN": "2s", "NOT_READY_DELAY_MAX": "3s"}); lo < 2*time.Second || hi > 3*time.Second || lo == hi {
		t.Errorf("not-ready delays %v..%v; want random within 2s..3s from the environment", lo, hi)
	}
	if lo, hi := delays(map[string]string{"NOT_READY_DELAY_MIN": "1s", "NOT_READY_DELAY_MAX": "1s"}); lo != time.Second || hi != time.Second {
		t.Errorf("not-ready delays %v..%v; want 1s", lo, hi)
	}
	if lo, hi := delays(map[string]string{}); lo < worker.DefaultNotReadyDelayMin || hi > worker.DefaultNotReadyDelayMax {
		t.Errorf("not-ready delays %v..%v unset; want the defaults %v..%v", lo, hi, worker.DefaultNotReadyDelayMin, worker.DefaultNotReadyDelayMax)
	}
	// Other failures keep asynq's backoff (15 s and more at the first retry).
	cfg, err := config.FromEnv(func(name string) string {
		return map[string]string{"DATABASE_URL": "postgres://app@db/inv", "NOT_READY_DELAY_MIN": "1s", "NOT_READY_DELAY_MAX": "1s"}[name]
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := worker.ServerConfig(serverOptions(cfg)).RetryDelayFunc(0, fmt.Errorf("db refused the query"), task); d < 10*time.Second {
		t.Errorf("a failure retried after %v with NOT_READY_DELAY_MAX=1s; want asynq's backoff", d)
	}
	if config.DefaultNotReadyDelayMin != worker.DefaultNotReadyDelayMin || config.DefaultNotReadyDelayMax != worker.DefaultNotReadyDelayMax {
		t.Errorf("config's not-ready delay defaults %v..%v differ from the worker's %v..%v",
			config.DefaultNotReadyDelayMin, config.DefaultNotReadyDelayMax, worker.DefaultNotReadyDelayMin, worker.DefaultNotReadyDelayMax)
	}
}
