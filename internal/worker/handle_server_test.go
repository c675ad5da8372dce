package worker_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// startWorker runs an asynq server with the worker's configuration and the
// real mux over h until the end of the test, and returns it so a test can
// shut it down earlier.
func startWorker(t *testing.T, e *handlerEnv, h *worker.Handlers, opts worker.ServerOptions) *asynq.Server {
	t.Helper()
	return startServer(t, e.redis, worker.NewServeMux(h, worker.MuxOptions{Logger: discardLogger()}), opts)
}

func TestServerInvoicePDFEndToEnd(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	a := e.provision(t, "alpha", "Alpha Tools")
	b := e.provision(t, "bravo", "Bravo Foods")
	e.addInvoice(t, a, acmeCustomer, acmeInvoice) // id 1
	e.addInvoice(t, b, invoice.Customer{Name: "Grace Hopper", Email: "grace@example.org"}, invoice.New{
		Number: "B-0001", Status: "sent", Currency: "USD", IssuedAt: time.Now(), DueAt: time.Now(),
		Lines: []invoice.Line{line("Compiler", "3", "12345.67"), line("Manual", "1", "0.01")},
	}) // id 1
	startWorker(t, e, e.h, worker.ServerOptions{Concurrency: 4})

	enqueue := func(p tasks.InvoicePDF) string {
		r, err := e.enqueuer.Enqueue(e.ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return r.Info.ID
	}
	idA, idB := enqueue(tasks.InvoicePDF{TenantID: a.ID, InvoiceID: 1}), enqueue(tasks.InvoicePDF{TenantID: b.ID, InvoiceID: 1})
	idMissing := enqueue(tasks.InvoicePDF{TenantID: a.ID, InvoiceID: 999})

	type result struct {
		Key    string `json:"storage_key"`
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	checks := []struct {
		tenant        tenantctx.Tenant
		taskID        string
		want, notWant []string
	}{
		{a, idA, []string{"Alpha Tools", acmeInvoice.Number, acmeCustomer.Name, "Consulting, January",
			"Travel expenses", "Loyalty discount", "Support hours", acmeTotal}, []string{"Bravo", "Grace Hopper"}},
		{b, idB, []string{"Bravo Foods", "B-0001", "Grace Hopper", "Compiler", "Manual", "USD 37,037.02"},
			[]string{"Alpha", acmeCustomer.Name, "Consulting"}},
	}
	first := map[string]result{}
	for _, c := range checks {
		info := testenv.WaitTaskState(t, e.inspector, tasks.QueueDefault, c.taskID, asynq.TaskStateCompleted)
		var res result
		if err := json.Unmarshal(info.Result, &res); err != nil {
			t.Fatalf("task %s result %q: %v", c.taskID, info.Result, err)
		}
		row, ok := e.documentRow(t, c.tenant, 1)
		if !ok || row.StorageKey != res.Key || row.SHA256 != res.SHA256 || row.Bytes != res.Bytes || res.Key != "invoices/1.pdf" {
			t.Errorf("tenant %s: result %+v, invoice_documents %+v", c.tenant.Slug, res, row)
		}
		text := pdfToText(t, e.readDocument(t, c.tenant, res.Key))
		for _, w := range c.want {
			if !strings.Contains(text, w) {
				t.Errorf("tenant %s: PDF lacks %q:\n%s", c.tenant.Slug, w, text)
			}
		}
		for _, w := range c.notWant {
			if strings.Contains(text, w) {
				t.Errorf("tenant %s: PDF shows %q of the other tenant:\n%s", c.tenant.Slug, w, text)
			}
		}
		first[c.tenant.ID] = res
	}

	info := testenv.WaitTaskState(t, e.inspector, tasks.QueueDefault, idMissing, asynq.TaskStateArchived)
	if want := "invoice 999 not found in tenant " + a.ID; !strings.Contains(info.LastErr, want) || info.Retried != 0 {
		t.Errorf("missing invoice archived after %d retries with %q, want at once with %q", info.Retried, info.LastErr, want)
	}

	// Rendering again (the finished task is replaced) gives the same document.
	again := enqueue(tasks.InvoicePDF{TenantID: a.ID, InvoiceID: 1})
	info = testenv.WaitTaskState(t, e.inspector, tasks.QueueDefault, again, asynq.TaskStateCompleted)
	var res result
	if err := json.Unmarshal(info.Result, &res); err != nil {
		t.Fatal(err)
	}
	if res != first[a.ID] {
		t.Errorf("second render %+v, first %+v: want the same SHA-256", res, first[a.ID])
	}
	if row, _ := e.documentRow(t, a, 1); row.SHA256 != first[a.ID].SHA256 {
		t.Errorf("invoice_documents.sha256 changed to %s", row.SHA256)
	}
}

// blockingMailer blocks in Send until its ctx is cancelled. Then, with
// deliverAnyway, it still delivers through next (an SMTP server that had
// already accepted the message when the worker shut down) and reports
// success; otherwise it reports ctx's error.
type blockingMailer struct {
	next          mailer.Mailer
	deliverAnyway bool
	started       chan struct{}
	once          sync.Once
}

func (m *blockingMailer) Send(ctx context.Context, msg mailer.Message) error {
	m.once.Do(func() { close(m.started) })
	<-ctx.Done()
	if m.deliverAnyway {
		return m.next.Send(context.Background(), msg)
	}
	return ctx.Err()
}

// TestServerShutdownDuringReminderSendsOneEmail is P11 of
// docs/architecture.md: a worker
// shut down while a reminder is being sent re-queues the task while the
// handler goes on; running the task again must not send a second email.
func TestServerShutdownDuringReminderSendsOneEmail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		deliverAnyway bool
	}{
		{"send interrupted", false},
		{"send completed after cancel", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			smtpSrv := smtptest.Start(t, smtptest.Options{})
			real := smtpMailer(t, smtpSrv)
			blocking := &blockingMailer{next: real, deliverAnyway: tc.deliverAnyway, started: make(chan struct{})}
			e := newHandlerEnv(t, blocking)
			acme := e.provision(t, "acme", "Acme")
			id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("ACME-1"))
			e.setToday(t, "2026-03-01")

			first := startWorker(t, e, e.h, worker.ServerOptions{Concurrency: 2, ShutdownTimeout: 300 * time.Millisecond})
			r, err := e.enqueuer.Enqueue(e.ctx, tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-blocking.started:
			case <-time.After(time.Minute): // a bound for the failure message, not a measurement
				t.Fatal("the reminder never reached the mailer")
			}
			first.Shutdown() // re-queues the task after 300 ms and cancels its ctx

			// A new worker with a working mailer runs the task again, at once.
			h2 := *e.h
			h2.Mailer = real
			startWorker(t, e, &h2, worker.ServerOptions{Concurrency: 2})
			testenv.WaitTaskState(t, e.inspector, tasks.QueueLow, r.Info.ID, asynq.TaskStateCompleted)
			// The first handler may still be finishing; give it time to
			// (wrongly) send again.
			time.Sleep(500 * time.Millisecond)

			if n := len(smtpSrv.Messages()); n != 1 {
				t.Fatalf("%d emails sent, want exactly 1", n)
			}
			if rows := e.reminderRows(t, acme, id); len(rows) != 1 || rows[0].Status != "sent" {
				t.Fatalf("reminder rows %+v, want one sent row", rows)
			}
		})
	}
}

// TestServerReminderSentAtItsDeadlineCompletes: on a reminder task's last
// attempt, a mail server that accepts the message and then hangs (no
// reply to the next command) must not leave the task archived as "timed
// out": the email went out, so the row says sent and the task completes
// with {"sent":true}. asynq settles a task the moment its deadline
// passes, whatever its handler does next; the send therefore ends the
// finish reserve before the deadline (here 5 s of a 10 s task), and the
// handler records the send and returns within the reserve.
func TestServerReminderSentAtItsDeadlineCompletes(t *testing.T) {
	t.Parallel()
	hang := make(chan struct{})
	smtpSrv := smtptest.Start(t, smtptest.Options{StallAfterAccept: hang})
	t.Cleanup(func() { close(hang) }) // runs before the server's cleanup
	e := newHandlerEnv(t, smtpMailer(t, smtpSrv))
	worker.SetFinishReserve(e.h, 5*time.Second)
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("ACME-1"))
	e.setToday(t, "2026-03-01")
	startWorker(t, e, e.h, worker.ServerOptions{Concurrency: 2})

	// The reminder's own spec, on its last attempt (no retry left) and
	// with a deadline the hanging server outlasts.
	p := tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}
	payload, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(e.redis)
	t.Cleanup(func() { _ = client.Close() })
	opts := append(p.Spec().Options(), asynq.MaxRetry(0), asynq.Timeout(10*time.Second))
	info, err := client.EnqueueContext(e.ctx, asynq.NewTask(p.TypeName(), payload), opts...)
	if err != nil {
		t.Fatal(err)
	}

	testenv.WaitFor(t, time.Minute, "the reminder task to complete or be archived", func() bool {
		info, err = e.inspector.GetTaskInfo(info.Queue, info.ID)
		return err == nil && (info.State == asynq.TaskStateCompleted || info.State == asynq.TaskStateArchived)
	})
	if info.State != asynq.TaskStateCompleted {
		t.Fatalf("task %s is %s (last error %q), want completed: the reminder was sent", info.ID, info.State, info.LastErr)
	}
	var res struct {
		Sent   bool   `json:"sent"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(info.Result, &res); err != nil || !res.Sent {
		t.Fatalf("task result %q (%v), want {\"sent\":true}", info.Result, err)
	}
	if n := len(smtpSrv.Messages()); n != 1 {
		t.Fatalf("%d emails sent, want exactly 1", n)
	}
	if rows := e.reminderRows(t, acme, id); len(rows) != 1 || rows[0].Status != "sent" {
		t.Fatalf("reminder rows %+v, want one sent row", rows)
	}
}
