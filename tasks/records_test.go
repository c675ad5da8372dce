package tasks

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/tenantctx"
)

// TestTaskRecordsArePerTenant: a tenant's records are capped per tenant, so
// one tenant's volume of archived tasks evicts only its own records and
// never another tenant's; a tenant never reads another's record; TenantTask
// falls back to the record of a task asynq no longer has; a new task with
// the same id drops the old record (P15 in docs/architecture.md).
func TestTaskRecordsArePerTenant(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	opt, rdb := newRedisClient(t)
	const perTenant = 5
	records := NewTaskRecords(rdb, TaskRecordsOptions{PerTenant: perTenant})
	quiet, noisy := tenantctx.NewID(), tenantctx.NewID()

	quietTask := InvoicePDF{TenantID: quiet, InvoiceID: 7}
	quietID := quietTask.Spec().TaskID
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	if err := records.Put(ctx, quiet, TaskRecord{TaskID: quietID, Type: TypeInvoicePDF, Queue: QueueDefault, Reason: "invoice not found", ArchivedAt: at}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 * perTenant {
		id := InvoicePDF{TenantID: noisy, InvoiceID: int64(i + 1)}.Spec().TaskID
		if err := records.Put(ctx, noisy, TaskRecord{TaskID: id, Type: TypeInvoicePDF, Queue: QueueDefault, Reason: "invoice not found"}); err != nil {
			t.Fatal(err)
		}
	}

	rec, err := records.Get(ctx, quiet, quietID)
	if err != nil || rec.Reason != "invoice not found" || !rec.ArchivedAt.Equal(at) {
		t.Fatalf("the quiet tenant's record after the noisy tenant's 50: %+v, %v", rec, err)
	}
	if _, err := records.Get(ctx, noisy, quietID); !errors.Is(err, ErrTaskNotFound) {
		t.Errorf("another tenant's record: %v, want ErrTaskNotFound", err)
	}
	kept := 0
	for i := range 10 * perTenant {
		id := InvoicePDF{TenantID: noisy, InvoiceID: int64(i + 1)}.Spec().TaskID
		if _, err := records.Get(ctx, noisy, id); err == nil {
			kept++
			if i < 9*perTenant {
				t.Errorf("the noisy tenant kept its old record %d", i+1)
			}
		}
	}
	if kept != perTenant {
		t.Errorf("the noisy tenant kept %d records, want its newest %d", kept, perTenant)
	}
	if n, _ := rdb.HLen(ctx, records.keys(noisy)[1]).Result(); n != perTenant {
		t.Errorf("the noisy tenant's hash holds %d records, want %d", n, perTenant)
	}

	// TenantTask falls back to the record; a new task with the id drops it.
	enq, _ := newTestEnqueuer(t, opt)
	enq = enq.WithTaskRecords(records)
	ti, err := enq.TenantTask(ctx, quiet, quietID)
	if err != nil || ti.State != asynq.TaskStateArchived || ti.LastErr != "invoice not found" || ti.Type != TypeInvoicePDF {
		t.Fatalf("TenantTask of a task only the record has = %+v, %v", ti, err)
	}
	if _, err := enq.TenantTask(ctx, noisy, quietID); !errors.Is(err, ErrTaskNotFound) {
		t.Errorf("TenantTask of another tenant's record = %v, want ErrTaskNotFound", err)
	}
	if _, err := enq.Enqueue(ctx, quietTask); err != nil {
		t.Fatal(err)
	}
	if _, err := records.Get(ctx, quiet, quietID); !errors.Is(err, ErrTaskNotFound) {
		t.Errorf("the old record after a new task with its id: %v, want it gone", err)
	}
	if ti, err := enq.TenantTask(ctx, quiet, quietID); err != nil || ti.State != asynq.TaskStatePending {
		t.Errorf("TenantTask of the new task = %+v, %v; want it pending", ti, err)
	}
}

// TestTaskRecordsRejectHostileInput: invalid tenant ids and task ids are
// refused before any key is built.
func TestTaskRecordsRejectHostileInput(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	rdb := redis.NewClient(&redis.Options{Addr: newRedis(t).Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	records := NewTaskRecords(rdb, TaskRecordsOptions{})
	for _, tenant := range []string{"", "x}{y", "tn_" + fmt.Sprint(make([]byte, 100))} {
		if err := records.Put(ctx, tenant, TaskRecord{TaskID: "t"}); err == nil {
			t.Errorf("Put for tenant %q succeeded", tenant)
		}
		if _, err := records.Get(ctx, tenant, "t"); !errors.Is(err, ErrTaskNotFound) {
			t.Errorf("Get for tenant %q = %v", tenant, err)
		}
	}
	if err := records.Put(ctx, tenantctx.NewID(), TaskRecord{}); err == nil {
		t.Error("Put without a task id succeeded")
	}
	if keys, _ := rdb.Keys(ctx, "*").Result(); len(keys) != 0 {
		t.Errorf("hostile input wrote keys %v", keys)
	}
}
