package worker_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestSweepFullShardDoesNotStopOtherShards: with QUEUE_SHARDS=2,
// one shard of `low` at its queue-wide cap (FAIR_MAX_WAITING_TOTAL) must not
// keep the tenants of the other shard from their invoices:overdue.
func TestSweepFullShardDoesNotStopOtherShards(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	layout, err := tasks.NewLayout(2, 0)
	if err != nil {
		t.Fatal(err)
	}
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger(),
		tasks.WithLayout(layout),
		// MinPending: with no worker alive, admission keeps asynq's
		// pending list MinPending deep (4 by default): the other shard
		// must take every tenant's task (up to all eight, tenant ids are
		// random), while the full one is held by its tenant's running cap.
		tasks.WithAdmission(tasks.Admission{Dispatcher: fair.New(rdb, fair.Config{MaxWaitingTotal: 1, MinPending: 64}), Tenants: e.catalog}))
	h := *e.h
	h.Enqueuer = enq
	w := workertest.New(&h, worker.MuxOptions{Logger: discardLogger()})

	var ts []tenantctx.Tenant
	for i := range 8 {
		ts = append(ts, e.provision(t, fmt.Sprintf("shard-%d", i), fmt.Sprintf("Shard %d", i)))
	}
	slices.SortFunc(ts, func(a, b tenantctx.Tenant) int { return strings.Compare(a.ID, b.ID) })
	first := ts[0]
	fullQueue := layout.Queue(tasks.QueueLow, first.ID)
	var others []tenantctx.Tenant
	for _, tn := range ts[1:] {
		if layout.Queue(tasks.QueueLow, tn.ID) != fullQueue {
			others = append(others, tn)
		}
	}
	// Tenant ids are random: about one run in 128 puts all eight in one
	// shard. Add tenants until the other shard has one.
	for i := len(ts); len(others) == 0; i++ {
		if i == 64 {
			t.Fatalf("%d tenants, all in shard %s", i, fullQueue)
		}
		tn := e.provision(t, fmt.Sprintf("shard-%d", i), fmt.Sprintf("Shard %d", i))
		if layout.Queue(tasks.QueueLow, tn.ID) != fullQueue {
			others = append(others, tn)
		}
	}
	// Fill the first tenant's shard: one admitted, one waiting = the cap.
	if _, err := e.catalog.SetLimits(e.ctx, first.ID, "", tenantctx.Limits{MaxRunning: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := enq.Enqueue(e.ctx, tasks.InvoiceReminder{TenantID: first.ID, InvoiceID: int64(i + 1), Day: "2026-01-01"}); err != nil {
			t.Fatal(err)
		}
	}
	const tick = 1767225600
	var buf bytes.Buffer
	err = w.Work(worker.RecordResults(e.ctx, &buf), tasks.SweepOverdue{Tick: tick})
	t.Logf("sweep: err=%v result=%s (full shard %s, %d tenants in the other shard)", err, buf.Bytes(), fullQueue, len(others))
	for _, tn := range others {
		id := tasks.InvoicesOverdue{TenantID: tn.ID, Tick: tick}.Spec().TaskID
		if _, err := enq.TenantTask(e.ctx, tn.ID, id); err != nil {
			t.Errorf("tenant %s (queue %s) got no invoices:overdue for the tick: %v", tn.ID, layout.Queue(tasks.QueueLow, tn.ID), err)
		}
	}
}
