package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestRecoveredLastAttemptIsRecordedForItsTenant: a task whose worker was
// killed (or lost Redis) while it ran its last allowed attempt is archived
// by asynq's recoverer of another worker, without the server's error
// handler; its tenant still gets its own record of it (P15), with the
// reason a tenant is shown, so that another tenant's volume evicting it
// from asynq's shared archive does not hide it. A task of a tenant being
// deleted gets none, as for any other archive.
func TestRecoveredLastAttemptIsRecordedForItsTenant(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	opt, rdb := newRedisClient(t)
	catalog := memstore.New()
	active := addTenant(t, catalog, "killed-last", tenantctx.StatusActive)
	deleting := addTenant(t, catalog, "killed-deleting", tenantctx.StatusDeleting)
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })

	// Each task as a killed worker leaves it on its last attempt: active
	// in asynq, its lease expired long enough ago for any recoverer.
	const q = "asynq:{default}:"
	leftActive := func(id, tenantID string) {
		t.Helper()
		payload, _ := json.Marshal(tasks.InvoicePDF{TenantID: tenantID, InvoiceID: 7})
		if _, err := client.Enqueue(asynq.NewTask(tasks.TypeInvoicePDF, payload), asynq.TaskID(id), asynq.MaxRetry(0), asynq.Queue("default")); err != nil {
			t.Fatal(err)
		}
		if err := rdb.LRem(ctx, q+"pending", 0, id).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.LPush(ctx, q+"active", id).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.ZAdd(ctx, q+"lease", redis.Z{Score: float64(time.Now().Add(-2 * time.Minute).Unix()), Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.HSet(ctx, q+"t:"+id, "state", "active").Err(); err != nil {
			t.Fatal(err)
		}
	}
	leftActive("killed-render", active.ID)
	leftActive("killed-render-deleting", deleting.ID)

	records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
	rdb.AddHook(worker.RecordRecoveredArchives(records, catalog, discardLogger()))
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Records: records}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error { return nil }),
	})
	startServerOn(t, rdb, mux, worker.ServerOptions{Records: records})
	for _, id := range []string{"killed-render", "killed-render-deleting"} {
		testenv.WaitFor(t, time.Minute, "the recoverer to archive "+id, func() bool {
			st, _ := rdb.HGet(ctx, q+"t:"+id, "state").Result()
			return st == "archived"
		})
	}

	rec, err := records.Get(ctx, active.ID, "killed-render")
	if err != nil {
		t.Fatalf("record of the task the recoverer archived: %v", err)
	}
	if rec.Reason != worker.ReasonRetriesExhausted || rec.Type != tasks.TypeInvoicePDF || rec.Queue != "default" {
		t.Errorf("record %+v, want reason %q, type %s, queue default", rec, worker.ReasonRetriesExhausted, tasks.TypeInvoicePDF)
	}
	if _, err := records.Get(ctx, deleting.ID, "killed-render-deleting"); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Errorf("record of a deleting tenant's task: %v, want none", err)
	}
}
