package worker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestUnknownTaskTypesAddNoCostFields: tasks of types no handler knows
// (written into asynq by anyone who can reach Redis, or by a newer
// producer) are archived, and their attempts are reported to the fair
// dispatcher to free their slots; their type names must not become fields
// of the dispatcher's cost hashes, which nothing ever removes: a type
// name per hostile task would grow them without bound.
func TestUnknownTaskTypesAddNoCostFields(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	w := newFairWorker(t)
	tn := addTenant(t, w.catalog, "types-acme", tenantctx.StatusActive)
	// A first task gives the tenant its state in the dispatcher.
	if _, err := w.enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the first task runs and is reported", func() bool {
		s := w.stats(t, tn.ID)
		return w.runs.Load() == 1 && s.Admitted == 0
	})
	client := asynq.NewClientFromRedisClient(w.rdb)
	const hostile = 20
	for i := range hostile {
		task := asynq.NewTask(fmt.Sprintf("hostile:type:%d", i), []byte(`{"tenant_id":"`+tn.ID+`"}`))
		info, err := client.Enqueue(task, asynq.Queue(tasks.QueueDefault), asynq.MaxRetry(3))
		if err != nil {
			t.Fatal(err)
		}
		testenv.WaitTaskState(t, w.ins, tasks.QueueDefault, info.ID, asynq.TaskStateArchived)
	}
	// A known task after them: once its report is in, theirs are too
	// (one reporter sends a queue's reports in order).
	if _, err := w.enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 2}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the second task runs and is reported", func() bool {
		s := w.stats(t, tn.ID)
		return w.runs.Load() == 2 && s.Admitted == 0
	})
	for _, key := range []string{"fair:{default}:cost", "fair:{default}:t:" + tn.ID} {
		fields, err := w.rdb.HKeys(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		var named []string
		for _, f := range fields {
			if strings.Contains(f, "hostile:") {
				named = append(named, f)
			}
		}
		if len(named) > 0 {
			t.Errorf("%s has %d fields named after unknown task types (of %d fields): %v", key, len(named), len(fields), named)
		}
	}
}
