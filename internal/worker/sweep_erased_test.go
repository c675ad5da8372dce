package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// erasedMidSweep is a catalog whose tenant victim is erased (its row
// deleted, as tenant:destroy does) right after the sweep read the first
// page of tenants.
type erasedMidSweep struct {
	storage.Catalog
	del    func(ctx context.Context, id string) error
	victim string
	once   sync.Once
	err    error
}

func (c *erasedMidSweep) ListTenants(ctx context.Context, opts storage.ListOptions) ([]tenantctx.Tenant, error) {
	page, err := c.Catalog.ListTenants(ctx, opts)
	c.once.Do(func() { c.err = c.del(ctx, c.victim) })
	return page, err
}

// TestSweepSkipsTenantErasedMidSweep: with fair dispatch, a tenant erased
// after the sweep listed it is skipped; the sweep completes and every
// other tenant, also those after it in id order, gets its
// invoices:overdue for the tick.
func TestSweepSkipsTenantErasedMidSweep(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: fair.New(rdb, fair.Config{}), Tenants: e.catalog}))

	var ts []tenantctx.Tenant
	for i := range 4 {
		ts = append(ts, e.provision(t, fmt.Sprintf("erased-%d", i), fmt.Sprintf("Erased %d", i)))
	}
	slices.SortFunc(ts, func(a, b tenantctx.Tenant) int { return strings.Compare(a.ID, b.ID) })
	victim := ts[0] // the first the sweep reaches
	cat := &erasedMidSweep{Catalog: e.h.Catalog, del: e.catalog.DeleteTenant, victim: victim.ID}
	h := *e.h
	h.Enqueuer, h.Catalog = enq, cat
	w := workertest.New(&h, worker.MuxOptions{Logger: discardLogger()})

	const tick = 1767225600
	var buf bytes.Buffer
	err := w.Work(worker.RecordResults(e.ctx, &buf), tasks.SweepOverdue{Tick: tick})
	if cat.err != nil {
		t.Fatalf("erase %s: %v", victim.ID, cat.err)
	}
	if err != nil {
		t.Fatalf("sweep with a tenant erased mid-sweep: %v", err)
	}
	var res struct{ Tenants, Enqueued int }
	if err := json.Unmarshal(buf.Bytes(), &res); err != nil || res.Enqueued != len(ts)-1 {
		t.Fatalf("sweep result %s (%v); want the %d other tenants enqueued", buf.Bytes(), err, len(ts)-1)
	}
	for _, tn := range ts[1:] {
		id := tasks.InvoicesOverdue{TenantID: tn.ID, Tick: tick}.Spec().TaskID
		if _, err := enq.TenantTask(e.ctx, tn.ID, id); err != nil {
			t.Errorf("tenant %s got no invoices:overdue for the tick: %v", tn.ID, err)
		}
	}
}
