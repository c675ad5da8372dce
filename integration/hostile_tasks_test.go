package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/tasks"
)

// TestHostileTasks enqueues hostile tasks straight into Redis with a raw
// asynq client (the attacker's tool; product code enqueues only through
// tasks.Enqueuer), each allowed 25 retries: every one is archived after a
// single attempt with a clear reason, none runs in a tenant schema (acme's
// rows are untouched, nothing was rendered or sent), a tenant:destroy of a
// live tenant waits instead of erasing it, and the worker keeps serving.
func TestHostileTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStack(t, stackOptions{workers: 1, concurrency: 4})
	acme := s.provision([]string{"acme"}, tenantName)[0]
	s.seed(acme, invoiceSeed{overdue: 3, lines: 2})

	client := asynq.NewClient(asynq.RedisClientOpt{Addr: s.redis.Addr()})
	defer client.Close()

	big := strings.Repeat("A", 10<<20)
	valid := fmt.Sprintf(`{"tenant_id":%q,"invoice_id":1}`, acme.ID)
	cases := []struct {
		name, typ, payload string
		// reason is a piece of the archived task's last error.
		reason string
	}{
		{"not JSON", tasks.TypeInvoicePDF, "\x00\xffnot json", "not a JSON object"},
		{"JSON array", tasks.TypeInvoicePDF, `[1,2,3]`, "not a JSON object"},
		{"JSON null", tasks.TypeInvoicePDF, `null`, "no tenant_id"},
		{"empty payload", tasks.TypeInvoicePDF, ``, "not a JSON object"},
		{"tenant_id a number", tasks.TypeInvoicePDF, `{"tenant_id":42,"invoice_id":1}`, "tenant_id is not a string"},
		{"tenant_id an object", tasks.TypeInvoiceReminder, `{"tenant_id":{"$ne":""},"invoice_id":1}`, "tenant_id is not a string"},
		{"tenant_id missing", tasks.TypeInvoicePDF, `{"invoice_id":1}`, "no tenant_id"},
		{"tenant_id null", tasks.TypeInvoiceReminder, `{"tenant_id":null,"invoice_id":1}`, "no tenant_id"},
		{"tenant_id empty", tasks.TypeInvoicesOverdue, `{"tenant_id":""}`, "tenant_id is empty"},
		{"unknown tenant", tasks.TypeInvoicePDF, `{"tenant_id":"tn_doesnotexist","invoice_id":1}`, "tn_doesnotexist not found"},
		{"SQL in tenant_id", tasks.TypeInvoicePDF, `{"tenant_id":"x'; drop schema tenant_acme; --","invoice_id":1}`, "bad tenant_id"},
		{"schema name as tenant_id", tasks.TypeTenantDestroy, `{"tenant_id":"tenant_acme"}`, "tenant_acme not found"},
		{"slug as tenant_id", tasks.TypeTenantMigrate, `{"tenant_id":"acme"}`, "acme not found"},
		{"10 MiB tenant_id", tasks.TypeInvoicePDF, `{"tenant_id":"` + big + `","invoice_id":1}`, "bad tenant_id"},
		{"10 MiB payload of garbage", tasks.TypeInvoiceReminder, big, "not a JSON object"},
		{"10 MiB payload, valid tenant", tasks.TypeInvoicePDF, fmt.Sprintf(`{"tenant_id":%q,"invoice_id":"%s"}`, acme.ID, big), "decode invoice:pdf payload"},
		{"SQL in invoice_id", tasks.TypeInvoicePDF, fmt.Sprintf(`{"tenant_id":%q,"invoice_id":"1; drop table invoices"}`, acme.ID), "decode invoice:pdf payload"},
		{"negative invoice_id", tasks.TypeInvoicePDF, fmt.Sprintf(`{"tenant_id":%q,"invoice_id":-1}`, acme.ID), "invoice"},
		{"invoice of no one", tasks.TypeInvoicePDF, fmt.Sprintf(`{"tenant_id":%q,"invoice_id":999999}`, acme.ID), "999999 not found"},
		{"bad reminder day", tasks.TypeInvoiceReminder, fmt.Sprintf(`{"tenant_id":%q,"invoice_id":1,"day":"2026-13-45'; --"}`, acme.ID), "day"},
		{"sweep with garbage", tasks.TypeSweepOverdue, `{"tick":"soon"}`, "decode sweep:overdue payload"},
		{"unknown type, valid tenant", "invoice:burn", valid, "invoice:burn"},
		{"unknown type, no tenant", "system:rm-rf", `{}`, "unknown task type"},
		{"type extending a known one", tasks.TypeInvoicePDF + ":evil", valid, "invoice:pdf:evil"},
	}

	ids := make([]string, len(cases))
	for i, c := range cases {
		info, err := client.EnqueueContext(ctx, asynq.NewTask(c.typ, []byte(c.payload)),
			asynq.Queue(tasks.QueueDefault), asynq.MaxRetry(25), asynq.Timeout(time.Minute))
		if err != nil {
			t.Fatalf("%s: enqueue: %v", c.name, err)
		}
		ids[i] = info.ID
	}
	// A tenant:destroy of a live tenant: it must wait, not erase.
	destroy, err := client.EnqueueContext(ctx, asynq.NewTask(tasks.TypeTenantDestroy, []byte(fmt.Sprintf(`{"tenant_id":%q}`, acme.ID))),
		asynq.Queue(tasks.QueueCritical), asynq.MaxRetry(25))
	if err != nil {
		t.Fatal(err)
	}

	var infos map[string]*asynq.TaskInfo
	// Settled: each task archived, or failed at least once and waiting to
	// be retried (which the checks below report).
	eventually(t, 90*time.Second, 250*time.Millisecond, "hostile tasks tried", func() error {
		var byState map[string]int
		infos, byState, err = s.taskStates(tasks.QueueDefault, ids)
		if err != nil {
			return err
		}
		for _, ti := range infos {
			if ti.State != asynq.TaskStateArchived && ti.Retried == 0 {
				return fmt.Errorf("%v", byState)
			}
		}
		return nil
	})
	for i, c := range cases {
		ti := infos[ids[i]]
		if ti.State != asynq.TaskStateArchived || ti.Retried != 0 || !strings.Contains(ti.LastErr, c.reason) || len(ti.LastErr) > 2048 {
			t.Errorf("%s (type %.40s): state %s after %d retries (max %d), last error %.300q (%d bytes); want archived after one attempt with a reason (<2 KiB) containing %q",
				c.name, c.typ, ti.State, ti.Retried, ti.MaxRetry, ti.LastErr, len(ti.LastErr), c.reason)
		} else {
			t.Logf("%-30s archived after one attempt: %.160s", c.name, ti.LastErr)
		}
	}

	dt, err := s.inspector.GetTaskInfo(tasks.QueueCritical, destroy.ID)
	if err != nil {
		t.Fatal(err)
	}
	if dt.State == asynq.TaskStateCompleted || dt.State == asynq.TaskStateArchived || dt.Retried != 0 {
		t.Errorf("tenant:destroy of an active tenant: state %s, retried %d, last error %q; want it waiting without failures", dt.State, dt.Retried, dt.LastErr)
	} else {
		t.Logf("tenant:destroy of an active tenant waits: state %s, last error %q", dt.State, dt.LastErr)
	}
	if err := s.inspector.DeleteTask(tasks.QueueCritical, destroy.ID); err != nil {
		t.Fatalf("delete the waiting destroy task: %v", err)
	}

	// Nothing ran in a schema: acme is intact, nothing rendered or sent.
	var tables, invoices, docs, reminders int
	q := func(table string) string { return pgx.Identifier{acme.Schema, table}.Sanitize() }
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = $1`, acme.Schema).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+q("invoices")+`), (SELECT count(*) FROM `+q("invoice_documents")+`), (SELECT count(*) FROM `+q("invoice_reminders")+`)`).Scan(&invoices, &docs, &reminders); err != nil {
		t.Fatalf("acme after the hostile tasks: %v", err)
	}
	if tables < 5 || invoices != 3 || docs != 0 || reminders != 0 {
		t.Errorf("acme after the hostile tasks: %d tables, %d invoices, %d documents, %d reminders; want >=5, 3, 0, 0", tables, invoices, docs, reminders)
	}
	var status string
	if err := s.db.QueryRow(ctx, `SELECT status FROM tenancy.tenants WHERE id = $1`, acme.ID).Scan(&status); err != nil || status != "active" {
		t.Errorf("acme's catalog row after the hostile tasks: status %q, %v", status, err)
	}

	// The worker keeps serving.
	if !s.workers[0].running() {
		t.Fatal("the worker exited")
	}
	good := s.mustPost(acme, "pdf", 1).TaskID
	s.waitCompleted(tasks.QueueDefault, []string{good}, 60*time.Second)
	if s.workers[0].logContains(`"outcome":"panic"`) {
		t.Errorf("a handler panicked")
	}
	t.Logf("%d hostile tasks tried, a tenant:destroy of a live tenant left waiting, a good task completed afterwards", len(cases))
}
