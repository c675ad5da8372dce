package enqueueapp_test

import (
	"context"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// held returns whether the tenant's queue is held by a move and by any
// reason.
func (f *fixture) held(t *testing.T, id string) (moving, paused bool) {
	t.Helper()
	q, err := f.deps.Tenancy.Queue(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(q.Queues, func(s fair.QueueStats) bool { return s.Moving }), q.Paused || q.Suspended
}

// TestKilledMoveHoldIsReleasedWithoutAnotherMove: a tenant move killed
// with SIGKILL while it copies leaves its hold on the tenant's queue; the
// workers' check (WatchStaleMoves) finds its move lock free and releases
// the hold within its interval, without another move, and the tenant's
// waiting task runs. While the move was alive the check left its hold
// alone, and it never lifts an operator's pause or a suspension.
func TestKilledMoveHoldIsReleasedWithoutAnotherMove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	tn := f.movable(t, "acme")
	// Two tenants held otherwise: paused by an operator, suspended.
	others := map[string]tenantctx.Tenant{"paused": f.provision(t, "paused"), "suspended": f.provision(t, "suspended")}
	for _, o := range others {
		if _, err := f.deps.Catalog.SetStatus(ctx, o.ID, tenantctx.StatusActive); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.deps.Tenancy.PauseQueue(ctx, others["paused"].ID, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.deps.Tenancy.Suspend(ctx, others["suspended"].ID, "test"); err != nil {
		t.Fatal(err)
	}

	// A write in progress to the tenant's invoices keeps the move's copy
	// waiting for its table lock.
	tx, err := f.deps.SchemaPool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{tn.Schema, "invoices"}.Sanitize()+" IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	m := f.startMove(t, "acme", "eu2")
	testenv.WaitFor(t, 30*time.Second, "the move to start copying", func() bool {
		return strings.Contains(m.stderr.String(), "copy the schema")
	})
	// Alive, the move holds its lock: the check leaves its hold alone.
	released, err := f.deps.Tenancy.ReleaseStaleMoves(ctx)
	if err != nil || len(released) != 0 {
		t.Fatalf("ReleaseStaleMoves during a live move = %v, %v; want nothing released", released, err)
	}
	if moving, _ := f.held(t, tn.ID); !moving {
		t.Fatal("the check released the hold of a move that runs")
	}

	_ = m.signal(t, syscall.SIGKILL)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("the move's stderr:\n%s", m.stderr.String())
	// Its hold stays, and a task of the tenant waits behind it.
	if moving, _ := f.held(t, tn.ID); !moving {
		t.Fatal("set-up: the killed move left no hold")
	}
	if _, err := f.deps.Enqueuer.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{}, 1)
	f.worker(t, tn.ID, func() { ran <- struct{}{} })
	select {
	case <-ran:
		t.Fatal("a task of the tenant ran while the killed move's hold was in place")
	case <-time.After(time.Second):
	}

	// The workers' check releases it within its interval: no other move.
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f.deps.Tenancy.WatchStaleMoves(wctx, 200*time.Millisecond) }()
	defer func() { stop(); <-done }()
	testenv.WaitFor(t, 10*time.Second, "the killed move's hold to be released", func() bool {
		moving, paused := f.held(t, tn.ID)
		return !moving && !paused
	})
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("the tenant's waiting task did not run after the hold was released")
	}
	for why, o := range others {
		if _, paused := f.held(t, o.ID); !paused {
			t.Errorf("the check lifted the hold of the %s tenant", why)
		}
	}
	var audit []string
	entries, err := f.deps.Catalog.AuditEntries(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		audit = append(audit, e.Action)
	}
	if slices.Contains(audit, string(tenancy.ActionMoved)) {
		t.Errorf("audit %q: the killed move is recorded as done", audit)
	}
}

// worker starts a worker serving the default queue whose invoice:pdf
// handler (for tasks of tenantID) calls ran, reporting each finished task to the dispatcher as
// cmd/worker does.
func (f *fixture) worker(t *testing.T, tenantID string, ran func()) {
	t.Helper()
	srv := asynq.NewServer(f.deps.RedisConnOpt, asynq.Config{
		Queues: map[string]int{tasks.QueueDefault: 1}, Concurrency: 1, LogLevel: asynq.FatalLevel,
		ShutdownTimeout: 5 * time.Second,
	})
	rep := f.deps.Dispatcher.NewReporter(quietLogger())
	t.Cleanup(func() { rep.Close(context.Background()) })
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeInvoicePDF, func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		q, _ := asynq.GetQueueName(ctx)
		defer rep.Report(fair.Report{Queue: q, TaskID: id, TenantID: tenantID, Type: task.Type()})
		ran()
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
}
