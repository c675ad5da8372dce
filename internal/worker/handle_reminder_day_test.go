package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// reminderOutcome is the task result of invoice:reminder.
type reminderOutcome struct {
	Sent   bool   `json:"sent"`
	Reason string `json:"reason"`
}

// reminderDay is a worker running the production mux over Redis, an SMTP
// server, and a tenant, for tests of how reminders of one day add up.
type reminderDay struct {
	e    *handlerEnv
	smtp *smtptest.Server
	tn   tenantctx.Tenant
	day  string // today, as the HTTP API and the sweep name it
}

// dayAfter returns the day n days after day (YYYY-MM-DD).
func dayAfter(t *testing.T, day string, n int) string {
	t.Helper()
	d, err := time.Parse(time.DateOnly, day)
	if err != nil {
		t.Fatal(err)
	}
	return d.AddDate(0, 0, n).Format(time.DateOnly)
}

func newReminderDay(t *testing.T) *reminderDay {
	t.Helper()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	// Today is read once and the handlers' clock is pinned to it: a test
	// that runs across midnight (the tenant's: UTC) must not see the
	// worker's today differ from d.day, nor judge due dates against
	// another day.
	tn := e.provision(t, "acme", "Acme")
	d := &reminderDay{e: e, smtp: srv, tn: tn, day: tn.Day(time.Now())}
	e.setToday(t, d.day)
	startWorker(t, e, e.h, worker.ServerOptions{Concurrency: 2})
	return d
}

// add inserts an invoice in status with its due date.
func (d *reminderDay) add(t *testing.T, number, status string, due time.Time) int64 {
	t.Helper()
	inv := acmeInvoice
	inv.Number, inv.Status, inv.DueAt = number, status, due
	return d.e.addInvoice(t, d.tn, acmeCustomer, inv)
}

// manual enqueues today's reminder of invoice id as POST
// /v1/invoices/{id}/reminders does, waits until it finished, and returns
// its result.
func (d *reminderDay) manual(t *testing.T, id int64) reminderOutcome {
	t.Helper()
	return d.remind(t, id, d.day)
}

// remind enqueues the reminder of invoice id for day, waits until it
// finished, and returns its result.
func (d *reminderDay) remind(t *testing.T, id int64, day string) reminderOutcome {
	t.Helper()
	r, err := d.e.enqueuer.Enqueue(d.e.ctx, tasks.InvoiceReminder{TenantID: d.tn.ID, InvoiceID: id, Day: day})
	if err != nil {
		t.Fatal(err)
	}
	info := d.finished(t, r.Info.ID)
	if len(info.Result) == 0 {
		return reminderOutcome{Reason: fmt.Sprintf("no result (%s, %q)", info.State, info.LastErr)}
	}
	var out reminderOutcome
	if err := json.Unmarshal(info.Result, &out); err != nil {
		t.Fatalf("reminder %s (%s, %q): result %q: %v", r.Info.ID, info.State, info.LastErr, info.Result, err)
	}
	return out
}

// sweep runs the tenant's invoices:overdue (as the sweep fans it out) and
// waits until every reminder it enqueued finished.
func (d *reminderDay) sweep(t *testing.T, tick int64) {
	t.Helper()
	if err := d.e.work(tasks.InvoicesOverdue{TenantID: d.tn.ID, Tick: tick}); err != nil {
		t.Fatalf("invoices:overdue: %v", err)
	}
	d.waitReminders(t)
}

// waitReminders waits until no reminder task is pending, active or
// waiting for a retry.
func (d *reminderDay) waitReminders(t *testing.T) {
	t.Helper()
	testenv.WaitFor(t, time.Minute, "the sweep's reminders to finish", func() bool {
		for _, state := range []asynq.TaskState{asynq.TaskStatePending, asynq.TaskStateActive, asynq.TaskStateRetry} {
			if n := d.count(t, state); n > 0 {
				return false
			}
		}
		return true
	})
}

// count returns how many reminder tasks are in state.
func (d *reminderDay) count(t *testing.T, state asynq.TaskState) int {
	t.Helper()
	list := map[asynq.TaskState]func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		asynq.TaskStatePending: d.e.inspector.ListPendingTasks,
		asynq.TaskStateActive:  d.e.inspector.ListActiveTasks,
		asynq.TaskStateRetry:   d.e.inspector.ListRetryTasks,
	}[state]
	infos, err := list(tasks.QueueLow)
	if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		t.Fatal(err)
	}
	n := 0
	for _, info := range infos {
		if info.Type == tasks.TypeInvoiceReminder {
			n++
		}
	}
	return n
}

// finished waits until task id completed or was archived.
func (d *reminderDay) finished(t *testing.T, id string) *asynq.TaskInfo {
	t.Helper()
	var info *asynq.TaskInfo
	testenv.WaitFor(t, time.Minute, "reminder "+id+" to finish", func() bool {
		i, err := d.e.inspector.GetTaskInfo(tasks.QueueLow, id)
		if err != nil {
			return false
		}
		info = i
		return i.State == asynq.TaskStateCompleted || i.State == asynq.TaskStateArchived
	})
	return info
}

// sentTo returns the invoice ids of the emails the SMTP server received, in
// order, from their Message-IDs.
func (d *reminderDay) sentTo(t *testing.T) []int64 {
	t.Helper()
	var ids []int64
	for _, m := range d.smtp.Messages() {
		mid := parseMail(t, m.Data).Header.Get("Message-Id")
		var id int64
		prefix := fmt.Sprintf("<reminder-%s-", d.tn.ID)
		if _, err := fmt.Sscanf(strings.TrimPrefix(mid, prefix), "%d-", &id); err != nil || !strings.HasPrefix(mid, prefix) {
			t.Fatalf("Message-ID %q is not a reminder of tenant %s", mid, d.tn.ID)
		}
		ids = append(ids, id)
	}
	return ids
}

// TestReminderManualThenSweepSendsOnce: a reminder asked for after an
// invoice's due date but before the sweep marked it overdue is sent (the
// invoice is marked), and the sweep then sends nothing more that day; a
// reminder asked for before the due date sends nothing and does not use up
// the day: the sweep after the due date sends it. Never two emails a day.
func TestReminderManualThenSweepSendsOnce(t *testing.T) {
	t.Parallel()
	d := newReminderDay(t)
	late := d.add(t, "LATE-1", "sent", pastDue)
	soon := d.add(t, "SOON-1", "sent", futureDue)

	if got := d.manual(t, late); !got.Sent {
		t.Fatalf("manual reminder of a sent invoice past its due date: %+v, want sent", got)
	}
	if got, want := d.manual(t, soon), (reminderOutcome{Reason: "invoice is sent, not overdue"}); got != want {
		t.Fatalf("manual reminder of an invoice not due yet: %+v, want %+v", got, want)
	}
	if got := d.e.invoiceStatus(t, d.tn, late); got != "overdue" {
		t.Errorf("invoice reminded past its due date is %s, want overdue", got)
	}
	if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{late}) {
		t.Fatalf("emails for invoices %v, want [%d]", got, late)
	}

	// SOON-1 falls due (it was due yesterday: due today is not overdue
	// yet); the sweep marks it and reminds it, not LATE-1.
	d.e.inTenant(t, d.tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE invoices SET due_date = $2::date::timestamp AT TIME ZONE 'UTC' WHERE id = $1`, soon, dayAfter(t, d.day, -1))
		return err
	})
	d.sweep(t, 1)
	if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{late, soon}) {
		t.Fatalf("after the sweep: emails for invoices %v, want [%d %d]", got, late, soon)
	}

	// Another sweep and more manual reminders the same day send nothing.
	d.sweep(t, 2)
	for _, id := range []int64{late, soon} {
		if got, want := d.manual(t, id), (reminderOutcome{Reason: "already sent today"}); got != want {
			t.Errorf("second manual reminder of invoice %d: %+v, want %+v", id, got, want)
		}
	}
	if n := len(d.smtp.Messages()); n != 2 {
		t.Fatalf("%d emails, want 2 (one per invoice)", n)
	}
	for _, id := range []int64{late, soon} {
		if rows := d.e.reminderRows(t, d.tn, id); len(rows) != 1 || rows[0].Status != "sent" || rows[0].Day != d.day {
			t.Errorf("invoice %d: reminder rows %+v, want one sent row for %s", id, rows, d.day)
		}
	}
}

// TestReminderSweepThenManualSendsOnce: the sweep's reminder is sent; a
// reminder asked for afterwards the same day runs and sends nothing.
func TestReminderSweepThenManualSendsOnce(t *testing.T) {
	t.Parallel()
	d := newReminderDay(t)
	id := d.add(t, "LATE-1", "overdue", pastDue)
	d.sweep(t, 1)
	if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{id}) {
		t.Fatalf("after the sweep: emails for invoices %v, want [%d]", got, id)
	}
	for range 2 {
		if got, want := d.manual(t, id), (reminderOutcome{Reason: "already sent today"}); got != want {
			t.Errorf("manual reminder after the sweep's: %+v, want %+v", got, want)
		}
	}
	if n := len(d.smtp.Messages()); n != 1 {
		t.Fatalf("%d emails, want 1", n)
	}
}

// TestLateReminderCountsForToday: yesterday's reminder that runs today
// (a retry, or a wait in a backlog, past midnight UTC) is sent and counts
// for today too: today's sweep and a reminder asked for today send no
// second email. Yesterday's reminder sent yesterday, run again today,
// sends nothing and does not use up today: the sweep sends today's.
func TestLateReminderCountsForToday(t *testing.T) {
	t.Parallel()
	d := newReminderDay(t)
	yesterday := dayAfter(t, d.day, -1)
	late := d.add(t, "LATE-1", "overdue", pastDue)
	if got := d.remind(t, late, yesterday); !got.Sent {
		t.Fatalf("yesterday's reminder run today: %+v, want sent", got)
	}
	d.sweep(t, 1)
	if got, want := d.manual(t, late), (reminderOutcome{Reason: "already sent today"}); got != want {
		t.Errorf("today's reminder after yesterday's ran today: %+v, want %+v", got, want)
	}
	if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{late}) {
		t.Fatalf("emails for invoices %v, want one for %d", got, late)
	}
	rows := d.e.reminderRows(t, d.tn, late)
	if len(rows) != 2 || rows[0].Day != yesterday || rows[1].Day != d.day || rows[0].Status != "sent" || rows[1].Status != "sent" {
		t.Errorf("reminder rows %+v, want %s and %s sent", rows, yesterday, d.day)
	}

	// Sent yesterday (its row says so), run again today: nothing sent,
	// nothing claimed for today; today's sweep sends today's.
	again := d.add(t, "LATE-2", "overdue", pastDue)
	d.e.inTenant(t, d.tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO invoice_reminders (invoice_id, sent_on, recipient, status, sent_at)
			VALUES ($1, $2::date, 'x@example.org', 'sent', now() - interval '1 day')`, again, yesterday)
		return err
	})
	if got, want := d.remind(t, again, yesterday), (reminderOutcome{Reason: "already sent on " + yesterday}); got != want {
		t.Errorf("yesterday's sent reminder run again today: %+v, want %+v", got, want)
	}
	if rows := d.e.reminderRows(t, d.tn, again); len(rows) != 1 {
		t.Errorf("reminder rows %+v, want only yesterday's", rows)
	}
	d.sweep(t, 2)
	if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{late, again}) {
		t.Fatalf("emails for invoices %v, want [%d %d]", got, late, again)
	}
}

// TestEarlyReminderCountsForToday: a reminder for tomorrow that runs
// today (its enqueuer's clock ran ahead, near midnight) claims today's row
// too, so today's own reminder sends no second email.
func TestEarlyReminderCountsForToday(t *testing.T) {
	t.Parallel()
	d := newReminderDay(t)
	tomorrow := dayAfter(t, d.day, 1)
	early := d.add(t, "EARLY-1", "overdue", pastDue)
	if got := d.remind(t, early, tomorrow); !got.Sent {
		t.Fatalf("tomorrow's reminder run today: %+v, want sent", got)
	}
	if got, want := d.manual(t, early), (reminderOutcome{Reason: "already sent today"}); got != want {
		t.Errorf("today's reminder after tomorrow's ran today: %+v, want %+v", got, want)
	}
	d.sweep(t, 1)
	if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{early}) {
		t.Fatalf("emails for invoices %v, want one for %d", got, early)
	}
	rows := d.e.reminderRows(t, d.tn, early)
	if len(rows) != 2 || rows[0].Day != d.day || rows[1].Day != tomorrow || rows[0].Status != "sent" || rows[1].Status != "sent" {
		t.Errorf("reminder rows %+v, want %s and %s sent", rows, d.day, tomorrow)
	}
}

// archivedForAddress gives the customer of a new overdue invoice the
// address bad, runs the invoice's reminder of today and checks that it was
// archived at once with the reason (not the address: leak must not be in
// the error) and recorded failed for bad. It returns the invoice, the
// enqueue result and the finished task.
func (d *reminderDay) archivedForAddress(t *testing.T, bad, leak string) (int64, tasks.EnqueueResult, *asynq.TaskInfo) {
	t.Helper()
	id := d.add(t, "LATE-1", "overdue", pastDue)
	d.e.inTenant(t, d.tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE customers SET email = $1`, bad)
		return err
	})
	r, err := d.e.enqueuer.Enqueue(d.e.ctx, tasks.InvoiceReminder{TenantID: d.tn.ID, InvoiceID: id, Day: d.day})
	if err != nil {
		t.Fatal(err)
	}
	info := d.finished(t, r.Info.ID)
	want := fmt.Sprintf("reminder for invoice %d on %s not sent: customer email address: recipient address does not parse", id, d.day)
	if info.State != asynq.TaskStateArchived || info.Retried != 0 || !strings.Contains(info.LastErr, want) {
		t.Fatalf("reminder to %q: %s after %d retries, %q; want archived at once with %q",
			bad, info.State, info.Retried, info.LastErr, want)
	}
	if strings.Contains(info.LastErr, leak) {
		t.Errorf("last error %q repeats the customer's address", info.LastErr)
	}
	if rows := d.e.reminderRows(t, d.tn, id); len(rows) != 1 || rows[0].Status != "failed" || rows[0].Recipient != bad {
		t.Fatalf("reminder rows %+v, want one failed row for %s", rows, bad)
	}
	return id, r, info
}

// TestReminderBadAddressArchivedAtOnce: a customer address that can never
// parse archives the reminder at once with the reason (not retried 10
// times), records the day's row failed, and the sweep does not try that
// address again; once the customer's address is fixed, the next sweep
// sends.
func TestReminderBadAddressArchivedAtOnce(t *testing.T) {
	t.Parallel()
	d := newReminderDay(t)
	const bad = "zoe(at)mueller.example"
	id, r, info := d.archivedForAddress(t, bad, "zoe")

	d.sweep(t, 1)
	if again, err := d.e.inspector.GetTaskInfo(tasks.QueueLow, r.Info.ID); err != nil || again.State != asynq.TaskStateArchived || again.LastFailedAt != info.LastFailedAt {
		t.Fatalf("after a sweep: %+v, %v; want the archived task untouched (the address is not tried again)", again, err)
	}

	d.e.inTenant(t, d.tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE customers SET email = $1`, acmeCustomer.Email)
		return err
	})
	d.sweep(t, 2)
	if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{id}) {
		t.Fatalf("after the address was fixed: emails for invoices %v, want [%d]", got, id)
	}
	if rows := d.e.reminderRows(t, d.tn, id); len(rows) != 1 || rows[0].Status != "sent" || rows[0].Recipient != acmeCustomer.Email {
		t.Fatalf("reminder rows %+v, want one sent row for %s", rows, acmeCustomer.Email)
	}
	if a := d.smtp.Attempts(); a != 1 {
		t.Errorf("SMTP server saw %d attempts, want 1", a)
	}
}

// TestReminderQuotedLocalPartArchivedAtOnce: a customer address whose
// local part needs quoting (go-mail would send RCPT
// TO:<victim@evil.example> x@example.org>, which a lenient server delivers
// to victim@evil.example and a strict one refuses on every retry) is
// treated as one that does not parse: archived at once, the day's row
// failed, nothing offered to the mail server.
func TestReminderQuotedLocalPartArchivedAtOnce(t *testing.T) {
	t.Parallel()
	d := newReminderDay(t)
	d.archivedForAddress(t, `"victim@evil.example> x"@example.org`, "victim")
	if a := d.smtp.Attempts(); a != 0 {
		t.Errorf("SMTP server saw %d attempts, want 0", a)
	}
}

// TestReminderWithoutAddressIsPermanent: a customer without an email
// address is a permanent failure recorded in the day's row.
func TestReminderWithoutAddressIsPermanent(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	nobody := acmeCustomer
	nobody.Email = " "
	id := e.addInvoice(t, acme, nobody, overdueInvoice("ACME-1"))
	e.setToday(t, "2026-03-01")
	err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"})
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "customer has no email address") {
		t.Fatalf("reminder to a customer without address = %v, want a permanent error", err)
	}
	if rows := e.reminderRows(t, acme, id); len(rows) != 1 || rows[0].Status != "failed" {
		t.Fatalf("reminder rows %+v, want one failed row", rows)
	}
	if a := srv.Attempts(); a != 0 {
		t.Fatalf("SMTP server saw %d attempts, want 0", a)
	}
}

// TestReminderFoldsTenantText: text the tenant controls reaches the email
// folded to one line, without control or bidi characters: a newline in a
// customer's name does not start a paragraph (with a link) of its own, a
// right-to-left override in an invoice number does not reach the Subject.
func TestReminderFoldsTenantText(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme\r\n\r\nInvoicing\u202e Ltd")
	eve := invoice.Customer{
		Name:  "Eve\n\nPlease pay to IBAN XX00 EVIL instead: https://evil.example/pay\n\nRegards",
		Email: "=?utf-8?q?Eve=E2=80=AE_=0D=0AFinance?= <eve@example.org>",
	}
	inv := overdueInvoice("INV-\u202e7001\u202c\n")
	id := e.addInvoice(t, acme, eve, inv)
	if err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
		t.Fatal(err)
	}
	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := parseMail(t, msgs[0].Data)
	if want := "Reminder: invoice INV-7001 is overdue"; m.Subject != want {
		t.Errorf("Subject = %q, want %q", m.Subject, want)
	}
	to, err := m.Header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Name != "Eve Finance" || to[0].Address != "eve@example.org" {
		t.Errorf("To = %v (%v), want Eve Finance <eve@example.org>", to, err)
	}
	lines := strings.Split(strings.TrimRight(m.Text, "\n"), "\n")
	wantFirst := "Dear Eve Please pay to IBAN XX00 EVIL instead: https://evil.example/pay Regards,"
	if lines[0] != wantFirst {
		t.Errorf("first line %q, want %q", lines[0], wantFirst)
	}
	for i, l := range lines[1:] {
		if strings.Contains(l, "evil") || strings.Contains(l, "Regards") {
			t.Errorf("line %d %q holds text of the customer's name: a paragraph was injected:\n%s", i+2, l, m.Text)
		}
	}
	for _, want := range []string{"invoice INV-7001 from Acme Invoicing Ltd was due on", "\nAcme Invoicing Ltd\n"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("body lacks %q:\n%s", want, m.Text)
		}
	}
	if strings.ContainsAny(m.Text+m.Subject+to[0].Name, bidiControls) || strings.Contains(m.Text, "\r") {
		t.Errorf("a bidi control or CR reached the message:\n%q", m.Text)
	}
	if _, ok := m.Attachments["invoice-INV-7001.pdf"]; !ok || len(m.Attachments) != 1 {
		t.Errorf("attachments %v, want invoice-INV-7001.pdf", keys(m.Attachments))
	}
}

// TestReminderFoldsTheCurrency: the invoice's currency is tenant data too
// (the app may store any three characters in invoices.currency): the
// amount line it is interpolated into stays one line, without a bidi
// control.
func TestReminderFoldsTheCurrency(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	inv := overdueInvoice("INV-7002")
	inv.Currency = "\u202e\nX"
	id := e.addInvoice(t, acme, acmeCustomer, inv)
	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := parseMail(t, msgs[0].Data)
	if strings.ContainsAny(m.Text, bidiControls) {
		t.Errorf("a bidi control reached the body:\n%q", m.Text)
	}
	if !regexp.MustCompile(`(?m)^Amount due: X [0-9,]+\.[0-9]{2}$`).MatchString(m.Text) {
		t.Errorf("body lacks the amount due on one line, as \"Amount due: X <amount>\":\n%q", m.Text)
	}
}

// TestReminderSubjectKeepsEncodedWordLiteral: an invoice number holding an
// RFC 2047 encoded word (which OneLine leaves alone: its text has no
// control character) reaches the Subject as the text itself, not as an
// encoded word the reader decodes into a right-to-left override; a
// customer's display name holding one is left out of To.
func TestReminderSubjectKeepsEncodedWordLiteral(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	eve := invoice.Customer{Name: "Eve", Email: `"=?utf-8?q?Eve=E2=80=AE?=" <eve@example.org>`}
	id := e.addInvoice(t, acme, eve, overdueInvoice("=?utf-8?q?=E2=80=AE1007-VNI?="))
	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := parseMail(t, msgs[0].Data)
	if want := "Reminder: invoice =?utf-8?q?=E2=80=AE1007-VNI?= is overdue"; m.Subject != want {
		t.Errorf("decoded Subject = %q (raw %q), want %q", m.Subject, m.Header.Get("Subject"), want)
	}
	to, err := m.Header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Name != "" || to[0].Address != "eve@example.org" {
		t.Errorf("To = %v (%v), want <eve@example.org> without the display name", to, err)
	}
	if raw := m.Header.Get("To"); strings.Contains(raw, "=?") {
		t.Errorf("raw To %q holds an encoded word", raw)
	}
}

// bidiControls are the Unicode bidirectional formatting characters.
const bidiControls = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

// TestReminderFromNonASCIIDomainIsSent: a MAIL_FROM whose domain is not
// ASCII (an internationalized domain written as such, which the
// configuration accepts) still gives reminders a Message-ID the mailer
// takes. The Message-ID used to carry that domain, which the mailer
// refuses as not id-left@id-right: every reminder failed with an ordinary
// error, was retried ten times and archived, every day.
func TestReminderFromNonASCIIDomainIsSent(t *testing.T) {
	t.Parallel()
	outbox := t.TempDir()
	m, err := mailer.NewFile(outbox)
	if err != nil {
		t.Fatal(err)
	}
	e := newHandlerEnv(t, m)
	e.h.MailFrom = "Rechnungen <rechnungen@müller.example>"
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("ACME-1"))
	e.setToday(t, "2026-03-01")
	p := tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}
	if err := e.work(p); err != nil {
		t.Fatalf("reminder from a non-ASCII domain: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(outbox, "*.eml"))
	if err != nil || len(files) != 1 {
		t.Fatalf("outbox holds %v (%v), want one message", files, err)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	got := parseMail(t, raw).Header.Get("Message-Id")
	if want := fmt.Sprintf("<reminder-%s-%d-2026-03-01@", acme.ID, id); !strings.HasPrefix(got, want) {
		t.Errorf("Message-ID = %q, want it to start with %q", got, want)
	}
	if rows := e.reminderRows(t, acme, id); len(rows) != 1 || rows[0].Status != "sent" {
		t.Errorf("reminder rows %+v, want one sent row", rows)
	}
}

// TestReminderRefusedRecipientArchivedAtOnce: a mail server that refuses
// the customer's address for good (550 to RCPT TO: no such mailbox)
// archives the reminder at once, with the day's row failed so that the
// sweep does not try that address again the same day. It used to be an
// ordinary error: ten retries over hours, each refused the same way. A
// 552 (mailbox full), which RFC 5321 asks clients to treat as temporary,
// is still retried.
func TestReminderRefusedRecipientArchivedAtOnce(t *testing.T) {
	t.Parallel()
	refused := map[string]error{"gone@example.org": smtptest.ErrNoMailbox, "full@example.org": smtptest.ErrMailboxFull}
	srv := smtptest.Start(t, smtptest.Options{RejectRcpt: func(to string) error { return refused[to] }})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	gone, full := acmeCustomer, acmeCustomer
	gone.Email, full.Email = "gone@example.org", "full@example.org"
	goneID := e.addInvoice(t, acme, gone, overdueInvoice("ACME-1"))
	fullID := e.addInvoice(t, acme, full, overdueInvoice("ACME-2"))
	e.setToday(t, "2026-03-01")

	err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: goneID, Day: "2026-03-01"})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("reminder to a refused mailbox = %v, want a permanent error", err)
	}
	if rows := e.reminderRows(t, acme, goneID); len(rows) != 1 || rows[0].Status != "failed" {
		t.Fatalf("reminder rows %+v, want one failed row", rows)
	}
	err = e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: fullID, Day: "2026-03-01"})
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("reminder to a full mailbox = %v, want an error that is retried", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("SMTP server accepted %d messages, want 0", n)
	}
}
