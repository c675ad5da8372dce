package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// recorder counts handler runs and remembers the tenant each run saw.
type recorder struct {
	mu      sync.Mutex
	runs    map[string]int    // task type -> runs
	tenants map[string]string // task type -> last ctx tenant id
}

func newRecorder() *recorder {
	return &recorder{runs: map[string]int{}, tenants: map[string]string{}}
}

func (r *recorder) record(ctx context.Context, typ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs[typ]++
	if tn, ok := tenantctx.FromContext(ctx); ok {
		r.tenants[typ] = tn.ID
	}
}

func (r *recorder) count(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[typ]
}

// testMux is the production chain (worker.Chain, as NewServeMux builds it)
// over handlers that only record that they ran, behind an outermost
// counter of attempts.
func testMux(catalog storage.Catalog, rec *recorder, attempts *atomic.Int64) asynq.Handler {
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, p tasks.InvoicePDF) error {
			rec.record(ctx, tasks.TypeInvoicePDF)
			return nil
		}),
		tasks.TypeTenantMigrate: worker.Handle(func(ctx context.Context, p tasks.TenantMigrate) error {
			rec.record(ctx, tasks.TypeTenantMigrate)
			return nil
		}),
		tasks.TypeTenantDestroy: worker.Handle(func(ctx context.Context, p tasks.TenantDestroy) error {
			rec.record(ctx, tasks.TypeTenantDestroy)
			return nil
		}),
		tasks.TypeSweepOverdue: worker.Handle(func(ctx context.Context, p tasks.SweepOverdue) error {
			rec.record(ctx, tasks.TypeSweepOverdue)
			return nil
		}),
	})
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		attempts.Add(1)
		return mux.ProcessTask(ctx, t)
	})
}

// TestResolveTenantArchivesTasksWithoutUsableTenant is P2 and P5 of
// docs/architecture.md: tasks whose tenant_id is missing, empty, not a string, invalid,
// unknown, deleted while queued, or whose tenant is being deleted, are
// archived after one attempt with the reason, and their handler never runs.
func TestResolveTenantArchivesTasksWithoutUsableTenant(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	redis := newRedis(t)
	catalog := memstore.New()
	deleting := addTenant(t, catalog, "deleting-co", tenantctx.StatusDeleting)
	vanished := addTenant(t, catalog, "vanished-co", tenantctx.StatusActive)

	cases := []struct {
		name    string
		payload string
		reason  string
	}{
		{"missing", `{"invoice_id":1}`, "payload has no tenant_id"},
		{"null", `{"tenant_id":null,"invoice_id":1}`, "payload has no tenant_id"},
		{"empty", `{"tenant_id":"","invoice_id":1}`, "tenant_id is empty"},
		{"numeric", `{"tenant_id":42,"invoice_id":1}`, "tenant_id is not a string"},
		{"invalid", `{"tenant_id":"a\"; drop schema x; --","invoice_id":1}`, "bad tenant_id"},
		{"not an object", `[1,2]`, "payload is not a JSON object"},
		{"unknown", `{"tenant_id":"tn_nosuchtenant","invoice_id":1}`, "tenant tn_nosuchtenant not found"},
		{"deleted while queued", fmt.Sprintf(`{"tenant_id":%q,"invoice_id":1}`, vanished.ID), "tenant " + vanished.ID + " not found"},
		{"deleting", fmt.Sprintf(`{"tenant_id":%q,"invoice_id":1}`, deleting.ID), "is being deleted"},
	}
	client := asynq.NewClient(redis)
	t.Cleanup(func() { _ = client.Close() })
	ids := make([]string, len(cases))
	for i, c := range cases {
		info, err := client.EnqueueContext(ctx, asynq.NewTask(tasks.TypeInvoicePDF, []byte(c.payload), asynq.MaxRetry(25), asynq.Queue(tasks.QueueDefault)))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = info.ID
	}
	// The tenant goes away after its task was queued (P5).
	if err := catalog.DeleteTenant(ctx, vanished.ID); err != nil {
		t.Fatal(err)
	}

	rec := newRecorder()
	var attempts atomic.Int64
	_, inspector := newTestEnqueuer(t, redis)
	startServer(t, redis, testMux(catalog, rec, &attempts), worker.ServerOptions{Concurrency: 4})

	for i, c := range cases {
		info := testenv.WaitTaskState(t, inspector, tasks.QueueDefault, ids[i], asynq.TaskStateArchived)
		if info.Retried != 0 {
			t.Errorf("%s: retried %d times, want 0", c.name, info.Retried)
		}
		if !strings.Contains(info.LastErr, c.reason) {
			t.Errorf("%s: last error %q does not mention %q", c.name, info.LastErr, c.reason)
		}
	}
	if n := rec.count(tasks.TypeInvoicePDF); n != 0 {
		t.Errorf("handler ran %d times for tasks without a runnable tenant", n)
	}
	if n := attempts.Load(); n != int64(len(cases)) {
		t.Errorf("%d attempts for %d tasks, want one each", n, len(cases))
	}
}

// TestResolveTenantSuspendedTenantWaits: a suspended tenant's task does
// not run, is not archived, waits in retry without its retry count growing
// (IsFailure), and runs once the tenant resumes.
func TestResolveTenantSuspendedTenantWaits(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	redis := newRedis(t)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "sleepy-co", tenantctx.StatusSuspended)
	enq, inspector := newTestEnqueuer(t, redis)
	res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 7})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	var attempts atomic.Int64
	startServer(t, redis, testMux(catalog, rec, &attempts), worker.ServerOptions{
		Concurrency: 2, NotReadyDelayMin: time.Second, NotReadyDelayMax: time.Second,
		DelayedTaskCheckInterval: 200 * time.Millisecond,
	})

	testenv.WaitFor(t, time.Minute, "three attempts of the suspended tenant's task", func() bool { return attempts.Load() >= 3 })
	info, err := inspector.GetTaskInfo(tasks.QueueDefault, res.Info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State == asynq.TaskStateArchived || info.State == asynq.TaskStateCompleted {
		t.Fatalf("suspended tenant's task is %s, want it waiting", info.State)
	}
	if info.Retried != 0 {
		t.Errorf("retried = %d after %d attempts, want 0 (waiting is not a failure)", info.Retried, attempts.Load())
	}
	if !strings.Contains(info.LastErr, "suspended") {
		t.Errorf("last error %q does not say the tenant is suspended", info.LastErr)
	}
	if n := rec.count(tasks.TypeInvoicePDF); n != 0 {
		t.Fatalf("handler ran %d times for a suspended tenant", n)
	}

	if _, err := catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	testenv.WaitTaskState(t, inspector, tasks.QueueDefault, res.Info.ID, asynq.TaskStateCompleted)
	if n := rec.count(tasks.TypeInvoicePDF); n != 1 {
		t.Errorf("handler ran %d times after resume, want 1", n)
	}
	if got := rec.tenants[tasks.TypeInvoicePDF]; got != tn.ID {
		t.Errorf("handler ctx tenant = %q, want %q", got, tn.ID)
	}
}

// TestResolveTenantByStatus checks, through the production chain, which
// task types run, wait or are archived for each status (the status
// policy, tenantctx.Status.Decide, applied to each type's activity).
func TestResolveTenantByStatus(t *testing.T) {
	t.Parallel()
	const (
		run     = "run"
		wait    = "wait"
		archive = "archive"
	)
	want := map[tenantctx.Status]map[string]string{
		tenantctx.StatusActive:       {tasks.TypeInvoicePDF: run, tasks.TypeTenantMigrate: run, tasks.TypeTenantDestroy: wait},
		tenantctx.StatusProvisioning: {tasks.TypeInvoicePDF: wait, tasks.TypeTenantMigrate: run, tasks.TypeTenantDestroy: wait},
		tenantctx.StatusSuspended:    {tasks.TypeInvoicePDF: wait, tasks.TypeTenantMigrate: run, tasks.TypeTenantDestroy: wait},
		tenantctx.StatusDeleting:     {tasks.TypeInvoicePDF: archive, tasks.TypeTenantMigrate: archive, tasks.TypeTenantDestroy: run},
	}
	catalog := memstore.New()
	for status, byType := range want {
		tn := addTenant(t, catalog, "co-"+string(status), status)
		for typ, w := range byType {
			ran := false
			h := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog}, map[string]asynq.Handler{
				typ: asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
					ran = true
					if got := tenantctx.MustFromContext(ctx); got.ID != tn.ID {
						t.Errorf("ctx tenant %s, want %s", got.ID, tn.ID)
					}
					return nil
				}),
			})
			payload, _ := json.Marshal(map[string]any{"tenant_id": tn.ID, "invoice_id": 1})
			err := h.ProcessTask(context.Background(), asynq.NewTask(typ, payload))
			var got string
			switch {
			case err == nil && ran:
				got = run
			case errors.Is(err, worker.ErrTenantNotReady) && !ran:
				got = wait
			case worker.IsPermanent(err) && !ran:
				got = archive
			default:
				got = fmt.Sprintf("ran=%v err=%v", ran, err)
			}
			if got != w {
				t.Errorf("%s tenant, %s: %s, want %s", status, typ, got, w)
			}
		}
	}
}

// failingCatalog fails every lookup as a database outage would.
type failingCatalog struct{ storage.Catalog }

func (failingCatalog) TenantByID(context.Context, string) (tenantctx.Tenant, error) {
	return tenantctx.Tenant{}, errors.New("connection refused")
}

// TestResolveTenantCatalogErrorIsRetried: a catalog outage is an ordinary
// error (retried with backoff), neither permanent nor "not ready".
func TestResolveTenantCatalogErrorIsRetried(t *testing.T) {
	t.Parallel()
	h := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: failingCatalog{memstore.New()}}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
			t.Error("handler ran without a tenant")
			return nil
		}),
	})
	err := h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"tn_a","invoice_id":1}`)))
	if err == nil || worker.IsPermanent(err) || errors.Is(err, worker.ErrTenantNotReady) {
		t.Fatalf("err = %v, want an ordinary retryable error", err)
	}
	if !strings.Contains(err.Error(), "tn_a") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v, want it to name the tenant and the cause", err)
	}
}

// TestResolveTenantSystemTaskRunsWithoutTenant: sweep:overdue has no
// tenant and runs with none in ctx.
func TestResolveTenantSystemTaskRunsWithoutTenant(t *testing.T) {
	t.Parallel()
	ran := false
	h := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: memstore.New()}, map[string]asynq.Handler{
		tasks.TypeSweepOverdue: asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
			ran = true
			if _, ok := tenantctx.FromContext(ctx); ok {
				t.Error("system task got a tenant in ctx")
			}
			return nil
		}),
	})
	if err := h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeSweepOverdue, []byte(`{"tick":1}`))); err != nil || !ran {
		t.Fatalf("sweep: err=%v ran=%v, want it run", err, ran)
	}
}

// TestTenantDeletedWhileRunning: a task whose handler fails because its
// tenant was deleted (or marked deleting) while it ran is archived with that
// reason instead of retried; a failure of a tenant that is still active
// stays an ordinary, retried error.
func TestTenantDeletedWhileRunning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	catalog := memstore.New()
	gone := addTenant(t, catalog, "gone-co", tenantctx.StatusActive)
	going := addTenant(t, catalog, "going-co", tenantctx.StatusActive)
	alive := addTenant(t, catalog, "alive-co", tenantctx.StatusActive)
	dbErr := errors.New(`relation "invoices" does not exist`)

	run := func(tn tenantctx.Tenant, during func()) error {
		h := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog}, map[string]asynq.Handler{
			tasks.TypeInvoicePDF: asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
				during()
				return dbErr
			}),
		})
		return h.ProcessTask(ctx, asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"`+tn.ID+`","invoice_id":1}`)))
	}
	err := run(gone, func() {
		if _, err := catalog.SetStatus(ctx, gone.ID, tenantctx.StatusDeleting); err != nil {
			t.Fatal(err)
		}
		if err := catalog.DeleteTenant(ctx, gone.ID); err != nil {
			t.Fatal(err)
		}
	})
	if !worker.IsPermanent(err) || !strings.Contains(err.Error(), "was deleted while") || !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("deleted while running: %v, want archived", err)
	}
	err = run(going, func() {
		if _, err := catalog.SetStatus(ctx, going.ID, tenantctx.StatusDeleting); err != nil {
			t.Fatal(err)
		}
	})
	if !worker.IsPermanent(err) || !strings.Contains(err.Error(), "is being deleted") {
		t.Errorf("marked deleting while running: %v, want archived", err)
	}
	err = run(alive, func() {})
	if worker.IsPermanent(err) || !errors.Is(err, dbErr) {
		t.Errorf("active tenant's failure: %v, want the ordinary error back", err)
	}
}

// ctxCatalog answers as the catalog it wraps while its caller's ctx is
// live and fails once it ended, as a look-up on PostgreSQL does.
type ctxCatalog struct{ storage.Catalog }

func (c ctxCatalog) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	if err := ctx.Err(); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("look up tenant %s: %w", id, err)
	}
	return c.Catalog.TenantByID(ctx, id)
}

// TestTenantDeletedWhileRunningPastItsDeadline: a task whose tenant was
// deleted while it ran, and which failed because its deadline passed (its
// schema gone, it waited until then), is archived with that reason as any
// other: the re-check of its tenant runs without the task's cancellation
// (droppedIfDeleted). On the task's ctx the look-up failed with the
// deadline, the tenant's deletion went unseen and the task was retried.
func TestTenantDeletedWhileRunningPastItsDeadline(t *testing.T) {
	t.Parallel()
	mem := memstore.New()
	tn := addTenant(t, mem, "late-gone-co", tenantctx.StatusActive)
	h := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: ctxCatalog{mem}}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
			if err := mem.DeleteTenant(context.Background(), tn.ID); err != nil {
				t.Fatal(err)
			}
			<-ctx.Done()
			return fmt.Errorf("in tenant: %w", ctx.Err())
		}),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := h.ProcessTask(ctx, asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"`+tn.ID+`","invoice_id":1}`)))
	if !worker.IsPermanent(err) || !strings.Contains(err.Error(), "was deleted while") || !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("deleted while running, failed past its deadline: %v, want archived as deleted", err)
	}
}

// stallingCatalog answers its first look-ups from the catalog it wraps,
// then waits on every later one until its ctx ends, as a catalog look-up
// on an exhausted pool or a hung PostgreSQL does.
type stallingCatalog struct {
	storage.Catalog
	answered atomic.Int32
	answers  int32
}

func (c *stallingCatalog) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	if c.answered.Add(1) <= c.answers {
		return c.Catalog.TenantByID(ctx, id)
	}
	<-ctx.Done()
	return tenantctx.Tenant{}, fmt.Errorf("look up tenant %s: %w", id, ctx.Err())
}

// TestFailedTaskRecheckIsBounded: a task that failed (here: past its
// deadline, its database unreachable) is checked against the catalog again
// in case its tenant was deleted meanwhile. When that look-up hangs too
// (an exhausted pool, a hung PostgreSQL), the check gives up and the
// task's own error comes back, retried: the chain ends, and its attempt is
// reported and logged, instead of waiting for ever.
func TestFailedTaskRecheckIsBounded(t *testing.T) {
	t.Parallel()
	catalog := &stallingCatalog{Catalog: memstore.New(), answers: 1}
	tn := addTenant(t, catalog.Catalog, "hung-co", tenantctx.StatusActive)
	h := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
			<-ctx.Done() // waiting for a connection until the task's deadline
			return fmt.Errorf("in tenant: acquire: %w", ctx.Err())
		}),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- h.ProcessTask(ctx, asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"`+tn.ID+`","invoice_id":1}`)))
	}()
	select {
	case err := <-done:
		if worker.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ProcessTask = %v, want the task's own deadline error, retried", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the chain still waits for the catalog 30 s after the task's deadline")
	}
}
