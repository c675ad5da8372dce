package worker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// TestRetriedMigrateRecordsTheLostActivation: a tenant:migrate attempt
// whose activation committed and whose answer was lost recorded no
// activation; asynq's retry of it, which finds the tenant active, records
// it, once. A first attempt for a tenant already active (a later
// migration) records nothing, also for a tenant whose audit log has no
// activation (created before the audit log, or by another system).
func TestRetriedMigrateRecordsTheLostActivation(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	retried := e.provision(t, "retriedmig", "Retried Ltd") // active, nothing recorded
	later := e.provision(t, "latermig", "Later Ltd")

	mux := worker.NewServeMux(e.h, worker.MuxOptions{Logger: discardLogger()})
	var failed sync.Map
	handler := asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		// The first attempt of retried's migration fails as one whose
		// answer was lost does, after the activation (which the test's
		// provisioning made).
		if id, _ := asynq.GetTaskID(ctx); strings.Contains(id, retried.ID) {
			if _, again := failed.LoadOrStore(id, true); !again {
				return errors.New("activate tenant: read tcp: connection reset by peer")
			}
		}
		return mux.ProcessTask(ctx, task)
	})
	cfg := worker.ServerConfig(worker.ServerOptions{Concurrency: 2, Logger: discardLogger(), ShutdownTimeout: 5 * time.Second})
	cfg.RetryDelayFunc = func(int, error, *asynq.Task) time.Duration { return 0 }
	srv := asynq.NewServer(e.redis, cfg)
	if err := srv.Start(handler); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	for _, tn := range []string{retried.ID, later.ID} {
		res, err := e.enqueuer.Enqueue(e.ctx, tasks.TenantMigrate{TenantID: tn})
		if err != nil {
			t.Fatal(err)
		}
		info := testenv.WaitTaskState(t, e.inspector, res.Info.Queue, res.Info.ID, asynq.TaskStateCompleted)
		if tn == retried.ID && info.Retried != 1 {
			t.Fatalf("retried's migration completed after %d retries, want 1", info.Retried)
		}
	}
	for _, c := range []struct {
		id   string
		want int
	}{{retried.ID, 1}, {later.ID, 0}} {
		_, entries := auditActions(t, e, c.id)
		var got []string
		for _, en := range entries {
			if en.Action == string(tenancy.ActionStatusChanged) {
				got = append(got, string(en.Detail))
			}
		}
		if len(got) != c.want || (c.want == 1 && !strings.Contains(strings.ReplaceAll(got[0], " ", ""), `"from":"provisioning"`)) {
			t.Errorf("tenant %s: %s entries %q, want %d activation", c.id, tenancy.ActionStatusChanged, got, c.want)
		}
	}
}
