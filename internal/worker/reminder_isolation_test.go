package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/tasks"
)

// meetingMailer counts every Send, and holds each until n have begun (or
// 10 s have passed): n sends at once, each transaction behind it open.
type meetingMailer struct {
	n     int32
	begun atomic.Int32
	met   chan struct{}
	sent  atomic.Int32
}

func (m *meetingMailer) Send(ctx context.Context, _ mailer.Message) error {
	m.sent.Add(1)
	if m.begun.Add(1) == m.n {
		close(m.met)
	}
	select {
	case <-m.met:
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	return nil
}

// TestRemindersOnASerializableDatabaseSendOnce: on a database whose
// default_transaction_isolation is serializable (or repeatable read),
// reminders of two invoices of one tenant sent at the same time (the
// sweep enqueues a tenant's reminders together, and workers run them at
// once) are each recorded sent, and a run after them sends nothing: the
// reminder's transaction runs at read committed, which its protocol (the
// day's row claimed and locked, then marked after the send) is made for.
// Before, the second commit was refused after its email had gone out
// (SQLSTATE 40001: the two transactions read and wrote
// invoice_reminders and invoices), its row rolled back, and its retry
// sent the customer a second email.
func TestRemindersOnASerializableDatabaseSendOnce(t *testing.T) {
	t.Parallel()
	m := &meetingMailer{n: 2, met: make(chan struct{})}
	e := newHandlerEnvSetting(t, m, "default_transaction_isolation", "serializable")
	tn := e.provision(t, "serializable", "Serializable SA")
	second := acmeInvoice
	second.Number = "ACME-2026-0002"
	reminders := []tasks.InvoiceReminder{
		{TenantID: tn.ID, InvoiceID: e.addInvoice(t, tn, acmeCustomer, acmeInvoice), Day: tn.Day(e.now())},
		{TenantID: tn.ID, InvoiceID: e.addInvoice(t, tn, acmeCustomer, second), Day: tn.Day(e.now())},
	}

	done := make(chan error, len(reminders))
	for _, p := range reminders {
		go func() { done <- e.work(p) }()
	}
	for range reminders {
		if err := <-done; err != nil {
			t.Errorf("reminder sent at the same time as another: %v", err)
		}
	}
	// What asynq does next: a failed reminder is retried, a sent one
	// enqueued again (the next sweep, a tenant's request) sends nothing.
	for _, p := range reminders {
		if err := e.work(p); err != nil {
			t.Errorf("reminder of invoice %d run again: %v", p.InvoiceID, err)
		}
		if rows := e.reminderRows(t, tn, p.InvoiceID); len(rows) != 1 || rows[0].Status != "sent" {
			t.Errorf("reminder rows of invoice %d: %+v, want one sent", p.InvoiceID, rows)
		}
	}
	if n := m.sent.Load(); n != int32(len(reminders)) {
		t.Errorf("%d emails sent for %d reminders, want one each", n, len(reminders))
	}
}
