package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// diesAtMigratedEntry is a catalog on which a run of tenant:migrate stops
// where a worker killed (kill -9, a lost machine) after the steps'
// commits stops: its tenant.migrated entry, written once all steps ran,
// is never written, nor the activation after it.
type diesAtMigratedEntry struct{ *storage.Postgres }

func (c diesAtMigratedEntry) AppendAudit(ctx context.Context, e storage.AuditEntry) error {
	if e.Action == string(tenancy.ActionMigrated) {
		return errors.New("worker killed")
	}
	return c.Postgres.AppendAudit(ctx, e)
}

// TestRetriedMigrateRecordsTheStepsOfAKilledRun: the first tenant:migrate
// of a new tenant is killed after its steps committed (all of them, or
// the first 3) and before their tenant.migrated entry. asynq's retry
// applies what is left, if anything, and activates the tenant; the audit
// log must still record, once, every step and that the schema was
// created.
func TestRetriedMigrateRecordsTheStepsOfAKilledRun(t *testing.T) {
	t.Parallel()
	for _, reached := range []int{schema.LatestVersion(), 3} {
		t.Run(fmt.Sprintf("killed at version %d", reached), func(t *testing.T) {
			t.Parallel()
			retriedMigrateAfterAKill(t, reached)
		})
	}
}

func retriedMigrateAfterAKill(t *testing.T, reached int) {
	e := newHandlerEnv(t, nil)
	p, err := e.h.Tenancy.Provision(e.ctx, tenancy.NewTenant{Slug: "killedmig"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	killed := *e.h
	killed.Tenancy = tenancy.New(tenancy.Config{Catalog: diesAtMigratedEntry{e.catalog}, Enqueuer: e.enqueuer, Documents: e.docs, SchemaPool: e.pool})
	killedMux := worker.NewServeMux(&killed, worker.MuxOptions{Logger: discardLogger()})
	mux := worker.NewServeMux(e.h, worker.MuxOptions{Logger: discardLogger()})
	var attempts atomic.Int64
	handler := asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		if attempts.Add(1) == 1 {
			if reached < schema.LatestVersion() {
				_, err := killed.Tenancy.Migrate(ctx, p.Tenant, reached, tenancy.ActorWorker)
				return err
			}
			return killedMux.ProcessTask(ctx, task)
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

	info := testenv.WaitTaskState(t, e.inspector, tasks.QueueCritical, p.MigrateTaskID, asynq.TaskStateCompleted)
	if info.Retried != 1 {
		t.Fatalf("the migration completed after %d retries, want 1", info.Retried)
	}
	_, entries := auditActions(t, e, p.Tenant.ID)
	var migrated []tenancy.MigrateResult
	for _, en := range entries {
		if en.Action != string(tenancy.ActionMigrated) {
			continue
		}
		var d tenancy.MigrateResult
		if err := json.Unmarshal(en.Detail, &d); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s %s", en.Action, en.Detail)
		migrated = append(migrated, d)
	}
	var want, got []int
	for v := 1; v <= schema.LatestVersion(); v++ {
		want = append(want, v)
	}
	created := 0
	for _, m := range migrated {
		got = append(got, m.Applied...)
		if m.Created {
			created++
		}
	}
	slices.Sort(got)
	if created != 1 || !slices.Equal(got, want) {
		t.Fatalf("tenant.migrated entries %+v, want steps %v each recorded once, and the schema created once", migrated, want)
	}
}
