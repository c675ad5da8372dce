package tasks

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestRefusedEnqueueKeepsRecordsThoughTakeWasSentAgain: an enqueue that
// replaces an archived task takes the tenant's record of its id before it
// goes to the dispatcher, and puts it back when the dispatcher refuses the
// enqueue (the tenant's backlog is full): nothing of the refused request is
// kept. go-redis sent the take again after a read timeout; the second run
// found the record gone (the first took it) and answered nothing, so the
// refused enqueue had nothing to put back, and the tenant's archived task
// was gone from GET /v1/tasks/{id} (404).
func TestRefusedEnqueueKeepsRecordsThoughTakeWasSentAgain(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	// The take sent twice (testenv.SendTwice), once armed.
	var armed atomic.Bool
	rdb.AddHook(&testenv.SendTwice{Match: func(args []any) bool {
		return armed.Load() && len(args) > 1 && args[1] == takeScript.Hash()
	}})
	catalog := memstore.New()
	tn, err := tenantctx.New("resent-acme", "Acme", "free")
	if err != nil {
		t.Fatal(err)
	}
	tn.Status = tenantctx.StatusActive
	if tn, err = catalog.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	if tn, err = catalog.SetLimits(ctx, tn.ID, "", tenantctx.Limits{MaxWaiting: 1}); err != nil {
		t.Fatal(err)
	}
	records := NewTaskRecords(rdb, TaskRecordsOptions{})
	enq := NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger(),
		WithAdmission(Admission{Dispatcher: fair.New(rdb, fair.Config{MinPending: 1}), Tenants: catalog})).WithTaskRecords(records)
	// Invoice 1 admitted, invoice 2 waiting: the backlog is full.
	for i := int64(1); i <= 2; i++ {
		if _, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tn.ID, InvoiceID: i}); err != nil {
			t.Fatal(err)
		}
	}
	archived := InvoicePDF{TenantID: tn.ID, InvoiceID: 5}
	id := archived.Spec().TaskID
	if err := records.Put(ctx, tn.ID, TaskRecord{TaskID: id, Type: TypeInvoicePDF, Queue: QueueDefault, Reason: "invoice not found"}); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	_, err = enq.Enqueue(ctx, archived)
	armed.Store(false)
	if !errors.Is(err, fair.ErrBacklogFull) {
		t.Fatalf("enqueue past the cap: %v, want ErrBacklogFull", err)
	}
	if rec, err := records.Get(ctx, tn.ID, id); err != nil || rec.Reason != "invoice not found" {
		t.Errorf("the record of the archived task after the refused enqueue: %+v, %v; want it kept", rec, err)
	}
}
