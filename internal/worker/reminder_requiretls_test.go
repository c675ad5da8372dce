package worker_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/tasks"
)

// swappableMailer sends through the mailer last stored.
type swappableMailer struct{ m atomic.Pointer[mailer.Mailer] }

func (s *swappableMailer) Send(ctx context.Context, m mailer.Message) error {
	return (*s.m.Load()).Send(ctx, m)
}

func (s *swappableMailer) use(m mailer.Mailer) { s.m.Store(&m) }

// TestInvoiceReminderRequiredTLSFailureIsRetriedNotLost: with
// SMTP_TLS=required and a mail server that does not offer STARTTLS, the
// reminder is not sent in clear and not lost: the run fails with an
// ordinary (retried) error that names SMTP_TLS=required (the task's
// last_error, the worker's log), its day's row is 'failed', and a retry
// once mail can go out sends it once.
func TestInvoiceReminderRequiredTLSFailureIsRetriedNotLost(t *testing.T) {
	t.Parallel()
	plain := smtptest.Start(t, smtptest.Options{})
	required, err := mailer.NewSMTP(plain.URL(), mailer.WithTLSMode(mailer.TLSRequired))
	if err != nil {
		t.Fatal(err)
	}
	var m swappableMailer
	m.use(required)
	e := newHandlerEnv(t, &m)
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("ACME-1"))
	p := tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}
	e.setToday(t, p.Day)

	err = e.work(p)
	if err == nil || errors.Is(err, asynq.SkipRetry) || !errors.Is(err, mailer.ErrSTARTTLSRequired) || !strings.Contains(err.Error(), "SMTP_TLS=required") {
		t.Fatalf("run against a server without STARTTLS = %v, want an ordinary (retried) error naming SMTP_TLS=required", err)
	}
	if a := plain.Attempts(); a != 0 || len(plain.Messages()) != 0 {
		t.Fatalf("the server got %d attempts, want none", a)
	}
	if rows := e.reminderRows(t, acme, id); len(rows) != 1 || rows[0].Status != "failed" || rows[0].SentAt != nil {
		t.Fatalf("after the refused send: rows %+v, want one failed row", rows)
	}
	t.Logf("error: %v", err)

	m.use(smtpMailer(t, smtptest.Start(t, smtptest.Options{})))
	if err := e.work(p); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if rows := e.reminderRows(t, acme, id); len(rows) != 1 || rows[0].Status != "sent" {
		t.Fatalf("after the retry: rows %+v, want one sent row", rows)
	}
}
