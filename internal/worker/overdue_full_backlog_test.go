package worker_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestInvoicesOverdueStopsAtAFullBacklog: with fair dispatch, a tenant's
// invoices:overdue whose reminders fill its own backlog (its max_waiting)
// stops enqueuing them and completes, saying so in its result: the next
// sweep of the day enqueues the rest, as the sweep itself skips a tenant
// whose backlog is full. It failed instead, counted as a failure, logged
// as an error and retried up to its last attempt, then archived.
func TestInvoicesOverdueStopsAtAFullBacklog(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: fair.New(rdb, fair.Config{}), Tenants: e.catalog}))
	h := *e.h
	h.Enqueuer = enq
	h.Now = func() time.Time { return now }
	w := workertest.New(&h, worker.MuxOptions{Logger: discardLogger()})

	acme := e.provision(t, "acme", "Acme")
	if _, err := e.catalog.SetLimits(e.ctx, acme.ID, "", tenantctx.Limits{MaxRunning: 1, MaxWaiting: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		inv := acmeInvoice
		inv.Number, inv.Status, inv.DueAt = fmt.Sprintf("late-%d", i), "sent", now.AddDate(0, 0, -3)
		e.addInvoice(t, acme, acmeCustomer, inv)
	}
	var buf bytes.Buffer
	if err := w.Work(worker.RecordResults(e.ctx, &buf), tasks.InvoicesOverdue{TenantID: acme.ID, Tick: 1}); err != nil {
		t.Fatalf("invoices:overdue with the tenant's backlog filling up: %v; want it to complete", err)
	}
	var res struct {
		Marked      int  `json:"marked_overdue"`
		Reminders   int  `json:"reminders_enqueued"`
		BacklogFull bool `json:"reminders_backlog_full"`
	}
	// One reminder admitted, one waiting: the third is refused.
	if err := json.Unmarshal(buf.Bytes(), &res); err != nil || res.Marked != 3 || res.Reminders != 2 || !res.BacklogFull {
		t.Fatalf("result %s (%v); want 3 marked, 2 reminders enqueued and the backlog full", buf.Bytes(), err)
	}
}
