package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// forwarding records what ReportCost reports and hands it on to the
// dispatcher's Reporter.
type forwarding struct {
	reports
	to *fair.Reporter
}

func (f *forwarding) Report(rep fair.Report) {
	f.reports.Report(rep)
	f.to.Report(rep)
}

// TestReportCostNamesTheRun: through the production chain, the report of
// an attempt names the run the dispatcher recorded for it while it ran:
// the run its admission started (asynq's message carries it), and for a
// retry let through the gate, the run the gate gave it, not the one its
// message still names from its admission. A report naming the admission's
// run would not end the retry's (it frees a slot only for its own run).
func TestReportCostNamesTheRun(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	catalog := memstore.New()
	ins := asynq.NewInspectorFromRedisClient(rdb)
	d := fair.New(rdb, fair.Config{})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), ins, discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}))
	tn := addTenant(t, catalog, "run-acme", tenantctx.StatusActive)

	// recorded holds, per task id, the run of its admission record while
	// its handler ran.
	var mu sync.Mutex
	recorded := map[string]string{}
	rep := &forwarding{to: d.NewReporter(discardLogger())}
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: rep, Parker: d}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			id, _ := asynq.GetTaskID(ctx)
			meta, err := rdb.HGet(ctx, "fair:{"+tasks.QueueDefault+"}:adm", id).Result()
			if err != nil {
				t.Errorf("admission record of %s while it runs: %v", id, err)
			}
			mu.Lock()
			recorded[id] = meta[strings.LastIndexByte(meta, '\t')+1:]
			mu.Unlock()
			return nil
		}),
	})
	srv := asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{Concurrency: 2, Logger: discardLogger(), ShutdownTimeout: 5 * time.Second}))
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		rep.to.Close(context.Background())
	})

	res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	admitted := res.Info.ID

	// Invoice 2's task failed twice before, under a run its message still
	// names; asynq's forwarder puts it back into the pending list, past
	// the dispatcher.
	retried := pushRetriedRender(t, rdb, tn.ID, 2)

	testenv.WaitFor(t, time.Minute, "both tasks run and reported", func() bool { return len(rep.all()) == 2 })
	mu.Lock()
	defer mu.Unlock()
	for _, r := range rep.all() {
		if r.TaskID != admitted && r.TaskID != retried {
			t.Fatalf("report of an unexpected task: %+v", r)
		}
		if want := recorded[r.TaskID]; r.Run == "" || r.Run == "stale" || r.Run != want {
			t.Errorf("report of %s names run %q; the dispatcher recorded run %q while it ran", r.TaskID, r.Run, want)
		}
	}
	testenv.WaitFor(t, time.Minute, "both slots freed by the reports", func() bool {
		s, err := d.Stats(ctx, tn.ID, tasks.QueueDefault)
		return err == nil && s[0].Admitted == 0
	})
}

// pushRetriedRender puts the render of invoiceID of tenantID into asynq's
// pending list of the default queue as asynq's forwarder does with a retry,
// past the dispatcher: retried twice before, under a run ("stale") its
// message still names. It returns the task id.
func pushRetriedRender(t *testing.T, rdb *redis.Client, tenantID string, invoiceID int64) string {
	t.Helper()
	ctx := t.Context()
	payload, err := json.Marshal(tasks.InvoicePDF{TenantID: tenantID, InvoiceID: invoiceID})
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("invoice:pdf:%s:%d", tenantID, invoiceID)
	msg := fair.Message{ID: id, Type: tasks.TypeInvoicePDF, Queue: tasks.QueueDefault, Payload: payload, Retry: 10, Timeout: time.Minute}.Encode()
	msg = protowire.AppendVarint(protowire.AppendTag(msg, 6, protowire.VarintType), 2) // retried: 2
	var entry []byte
	entry = protowire.AppendString(protowire.AppendTag(entry, 1, protowire.BytesType), fair.RunHeader)
	entry = protowire.AppendString(protowire.AppendTag(entry, 2, protowire.BytesType), "stale")
	msg = protowire.AppendBytes(protowire.AppendTag(msg, 15, protowire.BytesType), entry) // headers: fair-run = stale
	A := "asynq:{" + tasks.QueueDefault + "}:"
	if err := rdb.HSet(ctx, A+"t:"+id, "msg", msg, "state", "pending", "pending_since", time.Now().UnixNano()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.LPush(ctx, A+"pending", id).Err(); err != nil {
		t.Fatal(err)
	}
	return id
}
