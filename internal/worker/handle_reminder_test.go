package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tasks"
)

// smtpMailer returns a mailer submitting to srv.
func smtpMailer(t *testing.T, srv *smtptest.Server) mailer.Mailer {
	t.Helper()
	m, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// overdueInvoice is acmeInvoice, overdue.
func overdueInvoice(number string) invoice.New {
	inv := acmeInvoice
	inv.Number = number
	inv.Status = "overdue"
	return inv
}

func TestInvoiceReminderSendsOncePerDay(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{User: "worker", Password: "secret"})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme Invoicing Ltd")
	overdue := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("ACME-1"))
	paidInv := overdueInvoice("ACME-2")
	paidInv.Status = "paid"
	paid := e.addInvoice(t, acme, invoice.Customer{Name: "Paid Up", Email: "paid@example.org"}, paidInv)
	if err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: overdue}); err != nil {
		t.Fatal(err)
	}

	p := tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: overdue, Day: "2026-03-01"}
	e.setToday(t, p.Day)
	for i := range 3 {
		if err := e.work(p); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
	}
	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: paid, Day: "2026-03-01"}); err != nil {
		t.Fatalf("reminder of a paid invoice: %v", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("SMTP server received %d messages, want 1", len(msgs))
	}
	if got := msgs[0].To; len(got) != 1 || got[0] != acmeCustomer.Email {
		t.Errorf("envelope recipients %v, want [%s]", got, acmeCustomer.Email)
	}
	m := parseMail(t, msgs[0].Data)
	if want := "Reminder: invoice ACME-1 is overdue"; m.Subject != want {
		t.Errorf("Subject = %q, want %q", m.Subject, want)
	}
	if want := fmt.Sprintf("<reminder-%s-%d-2026-03-01@invoices.example>", acme.ID, overdue); m.Header.Get("Message-Id") != want {
		t.Errorf("Message-ID = %q, want %q", m.Header.Get("Message-Id"), want)
	}
	for _, want := range []string{acmeTotal, "2026-02-04", "ACME-1", acmeCustomer.Name, "Acme Invoicing Ltd"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("mail text lacks %q:\n%s", want, m.Text)
		}
	}
	pdfDoc := e.readDocument(t, acme, invoice.DocumentKey(overdue))
	if got := m.Attachments["invoice-ACME-1.pdf"]; !bytes.Equal(got, pdfDoc) {
		t.Errorf("attachment invoice-ACME-1.pdf: %d bytes, want the stored PDF (%d bytes); attachments %v",
			len(got), len(pdfDoc), keys(m.Attachments))
	}
	rows := e.reminderRows(t, acme, overdue)
	if len(rows) != 1 || rows[0].Status != "sent" || rows[0].SentAt == nil || rows[0].Recipient != acmeCustomer.Email || rows[0].Day != "2026-03-01" {
		t.Errorf("reminder rows %+v, want one sent row for 2026-03-01", rows)
	}
	if rows := e.reminderRows(t, acme, paid); len(rows) != 0 {
		t.Errorf("paid invoice has reminder rows %+v", rows)
	}

	// The next day is another reminder.
	e.setToday(t, "2026-03-02")
	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: overdue, Day: "2026-03-02"}); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Messages()); n != 2 {
		t.Fatalf("after the next day's reminder: %d messages, want 2", n)
	}
}

// TestInvoiceReminderWithoutPDFHasNoAttachment: a reminder of an invoice
// that has no PDF, or whose stored PDF is larger than an attachment may be
// (PDF_MAX_BYTES can allow that), is sent without one, at the first
// attempt: retried, it would be the same.
func TestInvoiceReminderWithoutPDFHasNoAttachment(t *testing.T) {
	t.Parallel()
	for _, oversized := range []bool{false, true} {
		t.Run(fmt.Sprintf("oversized=%v", oversized), func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, smtptest.Options{})
			e := newHandlerEnv(t, smtpMailer(t, srv))
			acme := e.provision(t, "acme", "Acme")
			id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("ACME-9"))
			if oversized {
				if err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
					t.Fatal(err)
				}
				// Stands in for a PDF of 21 MiB that PDF_MAX_BYTES allowed.
				if _, err := e.docs.Put(e.ctx, acme.ID, invoice.DocumentKey(id), bytes.NewReader(make([]byte, 21<<20))); err != nil {
					t.Fatal(err)
				}
			}
			e.setToday(t, "2026-03-01")
			if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
				t.Fatal(err)
			}
			msgs := srv.Messages()
			if len(msgs) != 1 {
				t.Fatalf("%d messages, want 1", len(msgs))
			}
			if m := parseMail(t, msgs[0].Data); len(m.Attachments) != 0 || !strings.Contains(m.Text, acmeTotal) || strings.Contains(m.Text, "attached") {
				t.Errorf("attachments %v (want none), text:\n%s", keys(m.Attachments), m.Text)
			}
			if rows := e.reminderRows(t, acme, id); len(rows) != 1 || rows[0].Status != "sent" {
				t.Errorf("reminder rows %+v, want one sent", rows)
			}
		})
	}
}

// TestInvoiceReminderWithoutDueDateNamesNoDate: an invoice without a due
// date (NULL), which the app set overdue itself, is reminded of without a
// date, not as "was due on 0001-01-01".
func TestInvoiceReminderWithoutDueDateNamesNoDate(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	inv := overdueInvoice("NODUE-1")
	inv.DueAt = time.Time{} // NULL due_date
	id := e.addInvoice(t, acme, acmeCustomer, inv)
	dated := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("DUE-1"))
	for _, id := range []int64{id, dated} {
		if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
			t.Fatal(err)
		}
	}
	msgs := srv.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	for i, want := range []string{
		"\ninvoice NODUE-1 from Acme is overdue.\n",
		"\ninvoice DUE-1 from Acme was due on 2026-02-04 and is overdue.\n",
	} {
		if m := parseMail(t, msgs[i].Data); !strings.Contains(m.Text, want) || strings.Contains(m.Text, "0001-01-01") {
			t.Errorf("reminder %d body lacks %q (or names year 1):\n%s", i+1, want, m.Text)
		}
	}
}

func TestInvoiceReminderRetryAfterFailedSendSendsOnce(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Reject: func(attempt int) error {
		if attempt == 1 {
			return smtptest.ErrTemporary
		}
		return nil
	}})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("ACME-1"))
	p := tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}
	e.setToday(t, p.Day)

	err := e.work(p)
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("first run against a rejecting server = %v, want an ordinary (retried) error", err)
	}
	if rows := e.reminderRows(t, acme, id); len(rows) != 1 || rows[0].Status != "failed" || rows[0].SentAt != nil {
		t.Fatalf("after the failed send: rows %+v, want one failed row", rows)
	}
	for i := range 2 {
		if err := e.work(p); err != nil {
			t.Fatalf("retry %d: %v", i+1, err)
		}
	}
	if n, a := len(srv.Messages()), srv.Attempts(); n != 1 || a != 2 {
		t.Fatalf("server accepted %d messages in %d attempts, want 1 in 2", n, a)
	}
	if rows := e.reminderRows(t, acme, id); len(rows) != 1 || rows[0].Status != "sent" {
		t.Fatalf("rows %+v, want one sent row", rows)
	}
}

func TestInvoiceReminderConcurrentRunsSendOnce(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("ACME-1"))
	p := tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if err := e.work(p); err != nil {
				t.Errorf("InvoiceReminder: %v", err)
			}
		})
	}
	wg.Wait()
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("6 concurrent runs sent %d messages, want 1", n)
	}
}

func TestInvoiceReminderCancelledContextSendsNothing(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("ACME-1"))
	// Past the chain on purpose: through it, the tenant lookup would
	// already stop on the cancelled ctx, and this is about the handler.
	ctx, cancel := context.WithCancel(e.tenantCtx(acme))
	cancel()
	err := e.h.InvoiceReminder(ctx, tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"})
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("InvoiceReminder with a cancelled ctx = %v, want an ordinary error", err)
	}
	if a := srv.Attempts(); a != 0 {
		t.Fatalf("SMTP server saw %d attempts, want 0", a)
	}
	if rows := e.reminderRows(t, acme, id); len(rows) != 0 {
		t.Fatalf("rows %+v, want none", rows)
	}
}

func TestInvoiceReminderSkipsAndRefuses(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	for _, status := range []string{"draft", "sent", "paid", "cancelled"} {
		inv := overdueInvoice("S-" + status)
		inv.Status, inv.DueAt = status, futureDue // a sent invoice past due is overdue
		id := e.addInvoice(t, acme, acmeCustomer, inv)
		if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
			t.Errorf("%s invoice: %v, want nil (skipped)", status, err)
		}
	}
	err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: 4242, Day: "2026-03-01"})
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "invoice 4242 not found in tenant "+acme.ID) {
		t.Errorf("missing invoice: %v, want a permanent not-found error", err)
	}
	if a := srv.Attempts(); a != 0 {
		t.Fatalf("SMTP server saw %d attempts, want 0", a)
	}
}

// keys returns the keys of m, for messages.
func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestReminderWaitingForConnectionHonoursDeadline: with every connection
// of the pool taken, a reminder task whose deadline passes while it waits
// for one returns with the deadline's error and sends nothing, instead of
// waiting (up to two minutes) on the context that only finishes a send.
func TestReminderWaitingForConnectionHonoursDeadline(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "waiting", "Waiting Ltd")
	id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("WAIT-1"))
	one, err := schema.NewPool(e.ctx, e.pool.Config().ConnString(), schema.PoolOptions{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(one.Close)
	held, err := one.Acquire(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release() // only once the handler returned
	h := *e.h
	h.Pool = one
	ctx, cancel := context.WithTimeout(e.tenantCtx(acme), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- h.InvoiceReminder(ctx, tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("reminder past its deadline: %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(time.Minute): // a bound for the failure message, not a measurement
		t.Fatal("reminder still waiting for a connection a minute after its 300ms deadline")
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d messages sent", n)
	}
}
