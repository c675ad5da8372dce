package worker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// erasureEnv is a handlerEnv with fair dispatch: a dispatcher on the
// env's Redis, an Enqueuer admitting through it, the tenancy service
// holding both (its Destroy forgets the tenant in the dispatcher).
type erasureEnv struct {
	*handlerEnv
	rdb *redis.Client
	d   *fair.Dispatcher
	ins *asynq.Inspector
	enq *tasks.Enqueuer
	svc *tenancy.Service
}

func newErasureEnv(t *testing.T) *erasureEnv {
	t.Helper()
	e := &erasureEnv{handlerEnv: newHandlerEnv(t, nil)}
	e.rdb = redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { _ = e.rdb.Close() })
	e.d = fair.New(e.rdb, fair.Config{Lease: fairLease})
	e.ins = asynq.NewInspectorFromRedisClient(e.rdb)
	e.enq = e.enqueuerOf(e.catalog)
	e.svc = tenancy.New(tenancy.Config{Catalog: e.catalog, Enqueuer: e.enq, Documents: e.docs, SchemaPool: e.pool, Dispatcher: e.d})
	e.h.Enqueuer = e.enq
	e.h.Tenancy = e.svc
	e.w = workertest.New(e.h, worker.MuxOptions{Logger: discardLogger()})
	return e
}

// enqueuerOf is an Enqueuer admitting through e's dispatcher that
// resolves tenants (their plan and limits) with lookup.
func (e *erasureEnv) enqueuerOf(lookup tasks.TenantLookup) *tasks.Enqueuer {
	return tasks.NewEnqueuer(asynq.NewClientFromRedisClient(e.rdb), e.ins, discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: e.d, Tenants: lookup}))
}

// serve runs an asynq server with the production mux of e's handlers
// (worker.NewServeMux: the Erased forgetter is the handlers' Tenancy),
// fair dispatch's reporter, parker and heartbeats, until the test ends.
func (e *erasureEnv) serve(t *testing.T) {
	t.Helper()
	beat, stop := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		e.d.Serve(beat, fair.Membership{ID: "erasure-worker", Queues: tasks.Queues, Concurrency: 2, Interval: 100 * time.Millisecond}, discardLogger())
	}()
	reporter := e.d.NewReporter(discardLogger())
	mux := worker.NewServeMux(e.h, worker.MuxOptions{Logger: discardLogger(), Reporter: reporter, Parker: e.d, Redis: e.rdb})
	srv := asynq.NewServerFromRedisClient(e.rdb, worker.ServerConfig(worker.ServerOptions{Concurrency: 2, Logger: discardLogger(), ShutdownTimeout: 5 * time.Second}))
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		reporter.Close(context.Background())
		stop()
		<-served
	})
}

// fairTraces lists what Redis keeps of tenant in fair dispatch's keys of
// every queue: the keys naming it that do not expire, and its members of the queues' tenant
// sets and hashes.
func fairTraces(t *testing.T, rdb *redis.Client, tenant string) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "fair:*"+tenant+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var traces []string
	for _, k := range keys {
		// A key that expires (a drain's record of its first step, an
		// hour) does not stay.
		if ttl, err := rdb.PTTL(ctx, k).Result(); err != nil || ttl < 0 {
			traces = append(traces, k)
		}
	}
	for _, q := range tasks.Queues {
		p := "fair:{" + q + "}:"
		for _, z := range []string{"ready", "depth", "lost"} {
			if _, err := rdb.ZScore(ctx, p+z, tenant).Result(); err == nil {
				traces = append(traces, p+z+" member")
			}
		}
		for _, s := range []string{"draining", "keptt", "parkedt"} {
			if ok, _ := rdb.SIsMember(ctx, p+s, tenant).Result(); ok {
				traces = append(traces, p+s+" member")
			}
		}
		if ok, _ := rdb.HExists(ctx, p+"hold", tenant).Result(); ok {
			traces = append(traces, p+"hold field")
		}
	}
	return traces
}

// staleLookup answers for the tenants it holds as they were, as a
// replica's tenant cache does for a second after their deletion.
type staleLookup map[string]tenantctx.Tenant

func (s staleLookup) TenantByID(_ context.Context, id string) (tenantctx.Tenant, error) {
	if tn, ok := s[id]; ok {
		return tn, nil
	}
	return tenantctx.Tenant{}, storage.ErrNotFound
}

// TestLateEnqueueAfterErasureIsForgotten: an enqueue that resolved its
// tenant before the tenant's erasure (the enqueue service's cache lagging
// the deletion, a handler's follow-up, the overdue sweep's fan-out) and
// reaches Redis after the destroy's last look gives the dispatcher the
// erased tenant's state again. The worker that meets the task, finding
// no tenant and the erasure recorded, archives it and forgets the tenant
// in its queue: nothing of the erased tenant stays in Redis, in either
// queue, while a live tenant's state in the same queues is untouched.
func TestLateEnqueueAfterErasureIsForgotten(t *testing.T) {
	t.Parallel()
	e := newErasureEnv(t)
	e.serve(t)
	live := e.provision(t, "live-acme", "Live Ltd")
	gone := e.provision(t, "gone-acme", "Gone Ltd")

	// A task of each, run (no such invoice: archived): both have state.
	for _, tn := range []tenantctx.Tenant{live, gone} {
		res, err := e.enq.Enqueue(e.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 404})
		if err != nil {
			t.Fatal(err)
		}
		testenv.WaitTaskState(t, e.ins, tasks.QueueDefault, res.Info.ID, asynq.TaskStateArchived)
	}
	liveBefore, err := e.d.Stats(e.ctx, live.ID, tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}

	del, err := e.svc.RequestDeletion(e.ctx, gone.ID, tenancy.ActorWorker)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitTaskState(t, e.ins, tasks.QueueCritical, del.TaskID, asynq.TaskStateCompleted)
	if tr := fairTraces(t, e.rdb, gone.ID); len(tr) > 0 {
		t.Fatalf("after the destroy: %v, want nothing of the erased tenant", tr)
	}

	// Late enqueues, resolved by a lookup that still has the tenant: a
	// render (default queue) and a migration (critical queue).
	late := e.enqueuerOf(staleLookup{gone.ID: gone})
	for _, p := range []tasks.Payload{tasks.InvoicePDF{TenantID: gone.ID, InvoiceID: 1}, tasks.TenantMigrate{TenantID: gone.ID}} {
		res, err := late.Enqueue(e.ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if res.Existing {
			t.Fatalf("late %s: existing, want a new task", p.TypeName())
		}
		info := testenv.WaitTaskState(t, e.ins, res.Info.Queue, res.Info.ID, asynq.TaskStateArchived)
		if info.LastErr == "" {
			t.Errorf("late %s archived without a reason", p.TypeName())
		}
	}
	// A task of the live tenant after them, reported: so are theirs (one
	// reporter sends a queue's reports in order), and a report after the
	// forget brings nothing back.
	res, err := e.enq.Enqueue(e.ctx, tasks.InvoicePDF{TenantID: live.ID, InvoiceID: 405})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitTaskState(t, e.ins, tasks.QueueDefault, res.Info.ID, asynq.TaskStateArchived)
	testenv.WaitFor(t, 10*time.Second, "the live tenant's report", func() bool {
		s, err := e.d.Stats(e.ctx, live.ID, tasks.QueueDefault)
		return err == nil && s[0].Admitted == 0
	})

	if tr := fairTraces(t, e.rdb, gone.ID); len(tr) > 0 {
		t.Errorf("what late enqueues gave the dispatcher of the erased tenant stays in Redis: %v", tr)
	}
	liveAfter, err := e.d.Stats(e.ctx, live.ID, tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	if liveAfter[0].Policy != liveBefore[0].Policy || liveAfter[0].Policy.Weight == 0 {
		t.Errorf("live tenant's policy: %+v, was %+v", liveAfter[0].Policy, liveBefore[0].Policy)
	}
	if n, _ := e.rdb.Exists(e.ctx, "fair:{default}:t:"+live.ID).Result(); n != 1 {
		t.Errorf("live tenant's state in the default queue is gone")
	}
}

// notFoundCatalog answers storage.ErrNotFound for one tenant that exists,
// as a cache that has not seen it yet (a tenant being provisioned) would.
type notFoundCatalog struct {
	storage.Catalog
	id string
}

func (c notFoundCatalog) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	if id == c.id {
		return tenantctx.Tenant{}, storage.ErrNotFound
	}
	return c.Catalog.TenantByID(ctx, id)
}

// failingAudit fails every read of the audit log, as a catalog database
// that went away does.
type failingAudit struct{ storage.Catalog }

func (failingAudit) AuditEntries(context.Context, string) ([]storage.AuditEntry, error) {
	return nil, errors.New("audit log unreachable")
}

// TestTaskOfATenantWithoutRecordedErasureKeepsItsState: only a recorded
// erasure lets a worker forget a tenant. A catalog answer of not found
// for a tenant that exists (a lagging cache, a tenant still being
// provisioned) archives the task as before and forgets nothing; an audit
// log that cannot be read leaves the tenant's state too, and the task is
// retried (an ordinary error), so a real erasure's state is forgotten by
// a later attempt.
func TestTaskOfATenantWithoutRecordedErasureKeepsItsState(t *testing.T) {
	t.Parallel()
	e := newErasureEnv(t)
	tn := e.provision(t, "kept-acme", "Kept Ltd")
	if _, err := e.d.Enqueue(e.ctx, tn.ID, fair.Policy{Weight: 2, MaxWaiting: 10}, []fair.Task{{Message: fair.Message{
		ID: "invoice:pdf:" + tn.ID + ":7", Type: tasks.TypeInvoicePDF, Queue: tasks.QueueDefault,
		Payload: []byte(`{"tenant_id":"` + tn.ID + `","invoice_id":7}`), Retry: 3, Timeout: time.Minute,
	}}}); err != nil {
		t.Fatal(err)
	}
	before := fairTraces(t, e.rdb, tn.ID)
	if len(before) == 0 {
		t.Fatal("no state of the tenant after its enqueue")
	}

	w := workertest.New(e.h, worker.MuxOptions{Logger: discardLogger(), Catalog: notFoundCatalog{e.catalog, tn.ID}})
	if err := w.Work(e.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 7}); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("task of a tenant the catalog does not find = %v, want it archived", err)
	}
	if after := fairTraces(t, e.rdb, tn.ID); len(after) != len(before) {
		t.Errorf("state of a tenant with no erasure recorded: %v, was %v", after, before)
	}

	e.h.Tenancy = tenancy.New(tenancy.Config{Catalog: failingAudit{e.catalog}, Enqueuer: e.enq, Documents: e.docs, SchemaPool: e.pool, Dispatcher: e.d})
	w = workertest.New(e.h, worker.MuxOptions{Logger: discardLogger(), Catalog: notFoundCatalog{e.catalog, tn.ID}})
	err := w.Work(e.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 7})
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("task of a tenant not found whose erasure could not be checked = %v, want an error that is retried", err)
	}
	if after := fairTraces(t, e.rdb, tn.ID); len(after) != len(before) {
		t.Errorf("state of a tenant whose erasure could not be checked: %v, was %v", after, before)
	}
}

// createAckLostKeeping commits CreateTenant and reports the connection
// reset, as a client sees a COMMIT whose answer was lost, keeping the
// tenant created: the provisioning is aborted (withdrawn, recorded).
type createAckLostKeeping struct {
	storage.Catalog
	created chan tenantctx.Tenant
}

func (c createAckLostKeeping) CreateTenant(ctx context.Context, t tenantctx.Tenant) (tenantctx.Tenant, error) {
	created, err := c.Catalog.CreateTenant(ctx, t)
	if err != nil {
		return tenantctx.Tenant{}, err
	}
	c.created <- created
	return tenantctx.Tenant{}, fmt.Errorf("create tenant %s: %w", t.ID, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})
}

// TestLateEnqueueAfterAbortedProvisioningIsForgotten: a recorded
// provisioning abort (the row withdrawn: the id never names a tenant) is
// an erasure too. A late enqueue for the tenant (its tenant:migrate, by a
// lookup that saw the row) gives the dispatcher its state, and the worker
// that meets the task forgets it.
func TestLateEnqueueAfterAbortedProvisioningIsForgotten(t *testing.T) {
	t.Parallel()
	e := newErasureEnv(t)
	created := make(chan tenantctx.Tenant, 1)
	svc := tenancy.New(tenancy.Config{Catalog: createAckLostKeeping{e.catalog, created}, Enqueuer: e.enq, Documents: e.docs, SchemaPool: e.pool, Dispatcher: e.d})
	if _, err := svc.Provision(e.ctx, tenancy.NewTenant{Slug: "aborted-acme"}, tenancy.ActorAdmin); err == nil {
		t.Fatal("Provision with the catalog INSERT's answer lost succeeded")
	}
	if err := svc.Wait(e.ctx); err != nil {
		t.Fatal(err)
	}
	tn := <-created
	if actions, _ := auditActions(t, e.handlerEnv, tn.ID); !slices.Contains(actions, string(tenancy.ActionProvisionAborted)) {
		t.Fatalf("audit of the aborted provisioning: %v", actions)
	}
	late := e.enqueuerOf(staleLookup{tn.ID: tn})
	if _, err := late.Enqueue(e.ctx, tasks.TenantMigrate{TenantID: tn.ID}); err != nil {
		t.Fatal(err)
	}
	if tr := fairTraces(t, e.rdb, tn.ID); len(tr) == 0 {
		t.Fatal("no state of the tenant after the late enqueue")
	}
	if err := e.work(tasks.TenantMigrate{TenantID: tn.ID}); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("tenant:migrate of the withdrawn tenant = %v, want it archived", err)
	}
	if tr := fairTraces(t, e.rdb, tn.ID); len(tr) > 0 {
		t.Errorf("state of the withdrawn tenant after its task was archived: %v", tr)
	}
}
