package tasks

import (
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

// fairSetup returns an Enqueuer with admission over a fresh Redis (at most
// minPending tasks admitted while no worker is alive), its inspector, and
// a catalog with two active tenants.
func fairSetup(t *testing.T, minPending int) (*Enqueuer, *asynq.Inspector, *memstore.Catalog, [2]tenantctx.Tenant) {
	t.Helper()
	_, rdb := newRedisClient(t)
	return fairSetupOn(t, rdb, minPending)
}

// fairSetupOn is fairSetup on the caller's Redis client.
func fairSetupOn(t *testing.T, rdb redis.UniversalClient, minPending int) (*Enqueuer, *asynq.Inspector, *memstore.Catalog, [2]tenantctx.Tenant) {
	t.Helper()
	ctx := testContext(t)
	catalog := memstore.New()
	var tenants [2]tenantctx.Tenant
	for i, slug := range []string{"fair-acme", "fair-globex"} {
		tn, err := tenantctx.New(slug, slug, "free")
		if err != nil {
			t.Fatal(err)
		}
		tn.Status = tenantctx.StatusActive
		if tenants[i], err = catalog.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	client := asynq.NewClientFromRedisClient(rdb)
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	d := fair.New(rdb, fair.Config{MinPending: minPending})
	enq := NewEnqueuer(client, inspector, discardLogger(), WithAdmission(Admission{Dispatcher: d, Tenants: catalog}))
	return enq, inspector, catalog, tenants
}

func TestFairEnqueueWaitsAndDedupes(t *testing.T) {
	t.Parallel()
	enq, inspector, _, tn := fairSetup(t, 1)
	testFairEnqueueWaitsAndDedupes(t, enq, inspector, tn)
}

func testFairEnqueueWaitsAndDedupes(t *testing.T, enq *Enqueuer, inspector *asynq.Inspector, tn [2]tenantctx.Tenant) {
	ctx := testContext(t)
	first, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tn[0].ID, InvoiceID: 1})
	if err != nil || first.Existing || first.Info.State != asynq.TaskStatePending || first.Info.Queue != QueueDefault {
		t.Fatalf("first = %+v, %v", first, err)
	}
	// Admitted: asynq has it.
	if info, err := inspector.GetTaskInfo(QueueDefault, first.Info.ID); err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("asynq has %+v, %v", info, err)
	}
	second, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tn[0].ID, InvoiceID: 2})
	if err != nil || second.Existing {
		t.Fatalf("second = %+v, %v", second, err)
	}
	// Waiting in the backlog: not in asynq, but the tenant sees it pending
	// and a repeat returns the same task.
	if _, err := inspector.GetTaskInfo(QueueDefault, second.Info.ID); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Fatalf("waiting task in asynq already: %v", err)
	}
	info, err := enq.TenantTask(ctx, tn[0].ID, second.Info.ID)
	if err != nil || info.State != asynq.TaskStatePending || info.Type != TypeInvoicePDF {
		t.Fatalf("TenantTask(waiting) = %+v, %v", info, err)
	}
	if _, err := enq.TenantTask(ctx, tn[1].ID, second.Info.ID); !errors.Is(err, ErrTaskNotFound) {
		t.Fatalf("another tenant's waiting task: %v, want ErrTaskNotFound", err)
	}
	again, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tn[0].ID, InvoiceID: 2})
	if err != nil || !again.Existing || again.Info.ID != second.Info.ID || again.Info.State != asynq.TaskStatePending {
		t.Fatalf("repeat of waiting = %+v, %v", again, err)
	}
	// System tasks go straight to asynq.
	sweep, err := enq.Enqueue(ctx, SweepOverdue{Tick: 42})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inspector.GetTaskInfo(QueueLow, sweep.Info.ID); err != nil {
		t.Fatalf("sweep not in asynq: %v", err)
	}
}

func TestFairEnqueueBacklogFull(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	enq, _, catalog, tn := fairSetup(t, 1)
	if _, err := catalog.SetLimits(ctx, tn[0].ID, "", tenantctx.Limits{MaxWaiting: 3}); err != nil {
		t.Fatal(err)
	}
	var payloads []Payload
	for i := range 3 {
		payloads = append(payloads, InvoicePDF{TenantID: tn[0].ID, InvoiceID: int64(10 + i)})
	}
	res, err := enq.EnqueueMany(ctx, tn[0].ID, payloads) // 1 admitted, 2 wait
	if err != nil || len(res) != 3 {
		t.Fatalf("EnqueueMany = %v, %v", res, err)
	}
	if _, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tn[0].ID, InvoiceID: 13}); err != nil {
		t.Fatalf("third waiting task: %v", err)
	}
	_, err = enq.Enqueue(ctx, InvoicePDF{TenantID: tn[0].ID, InvoiceID: 99})
	var full *fair.FullError
	if !errors.Is(err, fair.ErrBacklogFull) || !errors.As(err, &full) || full.RetryAfter < time.Second {
		t.Fatalf("past the cap: %v, want a fair.FullError", err)
	}
	// Another tenant is not affected, and a repeat is not refused.
	if _, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tn[1].ID, InvoiceID: 99}); err != nil {
		t.Fatalf("other tenant: %v", err)
	}
	if r, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tn[0].ID, InvoiceID: 13}); err != nil || !r.Existing {
		t.Fatalf("repeat at the cap = %+v, %v", r, err)
	}
}

func TestEnqueueManyRefusesMixedTenants(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	enq, _, _, tn := fairSetup(t, 1)
	_, err := enq.EnqueueMany(ctx, tn[0].ID, []Payload{InvoicePDF{TenantID: tn[0].ID, InvoiceID: 1}, InvoicePDF{TenantID: tn[1].ID, InvoiceID: 1}})
	if !errors.Is(err, ErrInvalidPayload) {
		t.Fatalf("mixed batch: %v, want ErrInvalidPayload", err)
	}
	big := make([]Payload, MaxBatch+1)
	for i := range big {
		big[i] = InvoicePDF{TenantID: tn[0].ID, InvoiceID: int64(i + 1)}
	}
	if _, err := enq.EnqueueMany(ctx, tn[0].ID, big); !errors.Is(err, ErrInvalidPayload) {
		t.Fatalf("oversized batch: %v, want ErrInvalidPayload", err)
	}
}

// TestFairEnqueueForgetsOldRecords: with admission, new tasks drop their
// ids' old archive records (one call per batch), and a task that already
// exists keeps its record.
func TestFairEnqueueForgetsOldRecords(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	catalog := memstore.New()
	tn, err := tenantctx.New("rec-acme", "Acme", "free")
	if err != nil {
		t.Fatal(err)
	}
	tn.Status = tenantctx.StatusActive
	if tn, err = catalog.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	records := NewTaskRecords(rdb, TaskRecordsOptions{})
	enq := NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger(),
		WithAdmission(Admission{Dispatcher: fair.New(rdb, fair.Config{MinPending: 1}), Tenants: catalog})).WithTaskRecords(records)

	var batch []Payload
	for id := int64(1); id <= 3; id++ {
		p := InvoicePDF{TenantID: tn.ID, InvoiceID: id}
		batch = append(batch, p)
		if err := records.Put(ctx, tn.ID, TaskRecord{TaskID: p.Spec().TaskID, Type: TypeInvoicePDF, Queue: QueueDefault, Reason: "invoice not found"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := enq.EnqueueMany(ctx, tn.ID, batch[:2]); err != nil {
		t.Fatal(err)
	}
	for i, p := range batch {
		_, err := records.Get(ctx, tn.ID, p.Spec().TaskID)
		if gone := errors.Is(err, ErrTaskNotFound); gone != (i < 2) {
			t.Errorf("record of task %d after enqueueing tasks 1-2: gone = %v (%v)", i+1, gone, err)
		}
	}
	// A repeat of a waiting task is Existing: the record a later archive
	// writes for it is not the repeat's to drop.
	id := batch[1].(InvoicePDF).Spec().TaskID
	res, err := enq.Enqueue(ctx, batch[1])
	if err != nil || !res.Existing {
		t.Fatalf("repeat = %+v, %v; want the existing task", res, err)
	}
	if err := records.Put(ctx, tn.ID, TaskRecord{TaskID: id, Type: TypeInvoicePDF, Queue: QueueDefault, Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := records.Get(ctx, tn.ID, id); err != nil {
		t.Errorf("the repeat of an existing task dropped its record: %v", err)
	}
}

// TestSystemTaskIsAnnounced: a system task bypasses admission, so the
// Enqueuer announces it on its queue's wake channel itself, as an
// admission into an empty pending list does: idle workers start it at
// once instead of at their next recheck. A duplicate (the same sweep tick
// again) is not announced.
func TestSystemTaskIsAnnounced(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	rdb := redis.NewClient(&redis.Options{Addr: newRedis(t).Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	enq, _, _, _ := fairSetupOn(t, rdb, 1)
	sub := rdb.PSubscribe(ctx, "fair:{*}:wake")
	t.Cleanup(func() { _ = sub.Close() })
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	res, err := enq.Enqueue(ctx, SweepOverdue{Tick: 1_700_000_000})
	if err != nil || res.Existing || res.Info.State != asynq.TaskStatePending {
		t.Fatalf("enqueue sweep = %+v, %v", res, err)
	}
	select {
	case m := <-sub.Channel():
		if m.Channel != fair.WakeChannel(res.Info.Queue) {
			t.Fatalf("announced on %s, want %s", m.Channel, fair.WakeChannel(res.Info.Queue))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the system task was not announced")
	}
	again, err := enq.Enqueue(ctx, SweepOverdue{Tick: 1_700_000_000})
	if err != nil || !again.Existing {
		t.Fatalf("the same tick again = %+v, %v; want the existing task", again, err)
	}
	select {
	case m := <-sub.Channel():
		t.Fatalf("a duplicate was announced on %s", m.Channel)
	case <-time.After(200 * time.Millisecond):
	}
}
