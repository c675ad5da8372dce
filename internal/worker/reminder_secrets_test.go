package worker_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/tasks"
)

// TestReminderErrorsDoNotNameTheCustomer: a reminder the mail server
// refuses at RCPT TO, for good (550) or for now (450), fails with an error
// that names neither the customer's address nor the SMTP password, in the
// task's error (asynq's last error, the dashboard) and in the worker's log
// line, as docs/guarantees.md says ("the customer's address is in neither"), also
// when the server's reply quotes the address as Postfix's does. go-mail's
// error appended "affected recipient(s): <address>".
func TestReminderErrorsDoNotNameTheCustomer(t *testing.T) {
	t.Parallel()
	const pass = "Pa55-smtp-s3cret"
	replies := map[string]error{
		"Gone.Customer@Example.org": &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
			Message: "<gone.customer@example.org>: Recipient address rejected: User unknown"},
		"later.customer@example.org": &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0},
			Message: "<later.customer@example.org>: Recipient address rejected: Greylisted"},
	}
	srv := smtptest.Start(t, smtptest.Options{User: "billing", Password: pass, RejectRcpt: func(to string) error {
		for a, err := range replies {
			if strings.EqualFold(a, to) {
				return err
			}
		}
		return nil
	}})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	var logs bytes.Buffer
	w := workertest.New(e.h, worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	acme := e.provision(t, "acme", "Acme")
	e.setToday(t, "2026-03-01")
	for addr := range replies {
		c := acmeCustomer
		c.Email = "Customer <" + addr + ">"
		id := e.addInvoice(t, acme, c, overdueInvoice("ACME-"+addr[:4]))
		err := w.Work(e.ctx, tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"})
		if err == nil {
			t.Fatalf("reminder to %s: no error", addr)
		}
		t.Logf("task error: %v", err)
		for _, s := range []string{strings.ToLower(addr), "@example.org", pass, pass[:5]} {
			if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(s)) {
				t.Errorf("task error names %q: %v", s, err)
			}
		}
	}
	for _, s := range []string{"@example.org", pass, pass[:5]} {
		if strings.Contains(strings.ToLower(logs.String()), strings.ToLower(s)) {
			t.Errorf("log names %q:\n%s", s, logs.String())
		}
	}
}
