package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// invalidationLost is a catalog whose DeleteTenant deletes the row and
// then reports, as storage.Cache does when Redis refuses the invalidation,
// that the deletion did not reach the other processes' caches.
type invalidationLost struct{ storage.Catalog }

func (c invalidationLost) DeleteTenant(ctx context.Context, id string) error {
	if err := c.Catalog.DeleteTenant(ctx, id); err != nil {
		return err
	}
	return fmt.Errorf("delete tenant %s: %w: publish: connection refused", id, storage.ErrInvalidationFailed)
}

// unreachableRedis returns a client of a loopback port nothing listens on:
// every command fails at once.
func unreachableRedis(t *testing.T) *redis.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// lineOf returns the JSON log line whose msg starts with msg, failing the
// test without one; it checks that the line names each key once.
func lineOf(t *testing.T, logs string, msg string) map[string]any {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m, _ := line["msg"].(string); strings.HasPrefix(m, msg) {
			if dup := duplicateKeys(t, l); len(dup) > 0 {
				t.Errorf("log line names %v twice:\n%s", dup, l)
			}
			return line
		}
	}
	t.Fatalf("no log line %q in:\n%s", msg, logs)
	return nil
}

// checkTaskAttrs fails the test unless line carries the task's tenant_id,
// task_id and task_type.
func checkTaskAttrs(t *testing.T, line map[string]any, tenantID, taskID, taskType string) {
	t.Helper()
	for k, want := range map[string]string{"tenant_id": tenantID, "task_id": taskID, "task_type": taskType} {
		if got, _ := line[k].(string); got != want {
			t.Errorf("%q: %s = %q, want %q (line %v)", line["msg"], k, got, want, line)
		}
	}
}

// TestTenantDestroyComponentWarningsNameTheTask: the warnings that the
// tenant cache and the tenant service log while a tenant:destroy task
// runs, through the process's own logger (not the handler's), carry the
// task's tenant_id, task_id and task_type, each once, as the README's
// LOG_FORMAT promises for a task's lines. The task runs on an asynq server
// on a real Redis and PostgreSQL; the worker resolves tenants through a
// storage.Cache whose Redis is unreachable ("tenant cache: redis read
// failed"), and the catalog row's deletion is not propagated ("destroy
// tenant: ... cache invalidation not propagated").
func TestTenantDestroyComponentWarningsNameTheTask(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	var logs testenv.LogBuffer
	logger := config.NewLogger(config.Config{LogFormat: config.LogFormatJSON}, &logs)

	gone := e.provision(t, "gone", "Gone")
	gone, err := e.catalog.SetStatus(e.ctx, gone.ID, tenantctx.StatusDeleting)
	if err != nil {
		t.Fatal(err)
	}
	cache := storage.NewCache(e.catalog, unreachableRedis(t), storage.CacheOptions{Logger: logger})
	t.Cleanup(func() { _ = cache.Close() })
	h := *e.h
	h.Catalog = cache
	h.Tenancy = tenancy.New(tenancy.Config{Catalog: invalidationLost{e.catalog}, Enqueuer: e.enqueuer, Documents: e.docs,
		SchemaPool: e.pool, Logger: logger})
	startServer(t, e.redis, worker.NewServeMux(&h, worker.MuxOptions{Logger: logger}), worker.ServerOptions{Concurrency: 1})

	r, err := e.enqueuer.Enqueue(e.ctx, tasks.TenantDestroy{TenantID: gone.ID})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitTaskState(t, e.inspector, r.Info.Queue, r.Info.ID, asynq.TaskStateCompleted)

	out := logs.String()
	for _, msg := range []string{
		"tenant cache: redis read failed, answering from the backend",
		"destroy tenant: catalog row deleted, cache invalidation not propagated",
		"task finished",
	} {
		checkTaskAttrs(t, lineOf(t, out, msg), gone.ID, r.Info.ID, tasks.TypeTenantDestroy)
	}
}

// TestTenantMigrateProvisioningWarningNamesTheTask: when a tenant:migrate
// task provisions a tenant and its document directories cannot be made (a
// file stands where the tenant's directory goes), the tenant service's
// warning carries the task's tenant_id, task_id and task_type, each once.
func TestTenantMigrateProvisioningWarningNamesTheTask(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	var logs testenv.LogBuffer
	logger := config.NewLogger(config.Config{LogFormat: config.LogFormatJSON}, &logs)

	fresh, err := tenantctx.New("fresh", "Fresh Ltd", "free")
	if err != nil {
		t.Fatal(err)
	}
	if fresh, err = e.catalog.CreateTenant(e.ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.docs.Root(), fresh.ID), []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := *e.h
	h.Tenancy = tenancy.New(tenancy.Config{Catalog: e.catalog, Enqueuer: e.enqueuer, Documents: e.docs,
		DocumentDirs: []string{invoice.DocumentDir}, SchemaPool: e.pool, Logger: logger})
	startServer(t, e.redis, worker.NewServeMux(&h, worker.MuxOptions{Logger: logger}), worker.ServerOptions{Concurrency: 1})

	r, err := e.enqueuer.Enqueue(e.ctx, tasks.TenantMigrate{TenantID: fresh.ID})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitTaskState(t, e.inspector, r.Info.Queue, r.Info.ID, asynq.TaskStateCompleted)
	if got, err := e.catalog.TenantByID(e.ctx, fresh.ID); err != nil || got.Status != tenantctx.StatusActive {
		t.Fatalf("tenant after its migration: %+v, %v; want active", got, err)
	}

	line := lineOf(t, logs.String(), "provisioning: document directories not prepared")
	checkTaskAttrs(t, line, fresh.ID, r.Info.ID, tasks.TypeTenantMigrate)
}

// TestUnknownTimeZoneWarningNamesTheTask: the tenant cache's warning that
// a tenant's time zone is unknown to this build, logged through the
// process's logger when a task's tenant look-up first meets the zone,
// carries the task's tenant_id, task_id and task_type, each once, as
// every line logged while a task runs does (README, LOG_FORMAT).
func TestUnknownTimeZoneWarningNamesTheTask(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	var logs testenv.LogBuffer
	logger := config.NewLogger(config.Config{LogFormat: config.LogFormatJSON}, &logs)

	future := e.provision(t, "future", "Future")
	if _, err := e.pool.Exec(e.ctx, `UPDATE tenancy.tenants SET time_zone = 'Mars/Olympus_Mons' WHERE id = $1`, future.ID); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	cache := storage.NewCache(e.catalog, rdb, storage.CacheOptions{Logger: logger})
	t.Cleanup(func() { _ = cache.Close() })
	h := *e.h
	h.Catalog = cache
	startServer(t, e.redis, worker.NewServeMux(&h, worker.MuxOptions{Logger: logger}), worker.ServerOptions{Concurrency: 1})

	r, err := e.enqueuer.Enqueue(e.ctx, tasks.InvoicesOverdue{TenantID: future.ID, Tick: 1})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitTaskState(t, e.inspector, r.Info.Queue, r.Info.ID, asynq.TaskStateCompleted)

	line := lineOf(t, logs.String(), "tenant time zone unknown to this build")
	checkTaskAttrs(t, line, future.ID, r.Info.ID, tasks.TypeInvoicesOverdue)
}
