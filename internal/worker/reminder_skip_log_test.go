package worker_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/tasks"
)

// TestReminderSkipLogsItsReasonAsAnAttribute: a reminder run that sends
// nothing logs one fixed message, "reminder skipped", with the reason as
// an attribute, so that a log pipeline counts and filters skips by msg and
// reason. The message was "reminder skipped: " plus the reason, which
// holds the invoice's status, a total or a date: one message per status,
// amount and day.
func TestReminderSkipLogsItsReasonAsAnAttribute(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	inv := overdueInvoice("S-paid")
	inv.Status, inv.DueAt = "paid", futureDue
	id := e.addInvoice(t, acme, acmeCustomer, inv)
	logs := &testenv.LogBuffer{}
	w := workertest.New(e.h, worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err := w.Work(e.ctx, tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		msg, _ := line["msg"].(string)
		if !strings.HasPrefix(msg, "reminder skipped") {
			continue
		}
		found = true
		if msg != "reminder skipped" || line["reason"] != "invoice is paid, not overdue" {
			t.Errorf("msg %q reason %v, want msg \"reminder skipped\" and the reason as an attribute:\n%s", msg, line["reason"], l)
		}
	}
	if !found {
		t.Fatalf("no reminder skipped line:\n%s", logs.String())
	}
}
