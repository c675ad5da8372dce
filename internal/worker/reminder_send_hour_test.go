package worker_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// overdueOutcome is the task result of invoices:overdue.
type overdueOutcome struct {
	Marked        int64  `json:"marked_overdue"`
	Enqueued      int    `json:"reminders_enqueued"`
	Existing      int    `json:"reminders_existing"`
	DeferredUntil string `json:"reminders_deferred_until"`
}

// overdue runs tenant tn's invoices:overdue of tick through w (the
// production chain, logging where w's logger does) and returns its task
// result.
func (d *reminderDay) overdue(t *testing.T, w *workertest.Worker, tn tenantctx.Tenant, tick int64) overdueOutcome {
	t.Helper()
	var buf bytes.Buffer
	if err := w.Work(worker.RecordResults(d.e.ctx, &buf), tasks.InvoicesOverdue{TenantID: tn.ID, Tick: tick}); err != nil {
		t.Fatalf("invoices:overdue of tenant %s: %v", tn.ID, err)
	}
	var out overdueOutcome
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		t.Fatalf("invoices:overdue result %q: %v", buf.String(), err)
	}
	return out
}

// overdueLogLine returns the "overdue invoices processed" line of logs
// (JSON lines) that names tenant id.
func overdueLogLine(t *testing.T, logs, id string) map[string]any {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "overdue invoices processed" && m["tenant_id"] == id {
			return m
		}
	}
	t.Fatalf("no \"overdue invoices processed\" line for tenant %s in:\n%s", id, logs)
	return nil
}

// TestSweepDefersRemindersUntilTheSendHour: with REMINDER_SEND_HOUR=9, a
// sweep at 08:30 in Tokyo marks the invoice due the day before overdue but
// enqueues no reminder, and its task result and log line say until when;
// at that same instant (12:30 in Auckland) a tenant already past 9 gets
// its reminder. The sweep at 09:05 in Tokyo the same day sends Tokyo's.
func TestSweepDefersRemindersUntilTheSendHour(t *testing.T) {
	t.Parallel()
	d := newReminderDayAt(t, "Asia/Tokyo", 9)
	tokyoInvoice := d.e.addDueOn(t, d.tn, "DUE-DEC-6", "2026-12-06")
	auckland := d.e.provision(t, "kiwi", "Kiwi")
	auckland, err := d.e.h.Tenancy.SetTimeZone(d.e.ctx, auckland.ID, "Pacific/Auckland", "test")
	if err != nil {
		t.Fatal(err)
	}
	aucklandInvoice := d.e.addDueOn(t, auckland, "DUE-DEC-6", "2026-12-06")
	var logs bytes.Buffer
	w := workertest.New(d.e.h, worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})

	early := d.at(t, "2026-12-07", 8, 30)
	if got := auckland.Today(early); got.Hour() < 9 || auckland.Day(early) != "2026-12-07" {
		t.Fatalf("at %s it is %s in Auckland: the test needs 7 December past 09:00", early.UTC(), got)
	}
	got := d.overdue(t, w, d.tn, 1)
	if want := (overdueOutcome{Marked: 1, DeferredUntil: "09:00"}); got != want {
		t.Errorf("Tokyo's sweep at 08:30 local: result %+v, want %+v", got, want)
	}
	if status := d.e.invoiceStatus(t, d.tn, tokyoInvoice); status != "overdue" {
		t.Errorf("Tokyo's invoice after the sweep at 08:30 local: %s, want overdue (marked whatever the hour)", status)
	}
	line := overdueLogLine(t, logs.String(), d.tn.ID)
	if line["reminders_deferred_until"] != "09:00" || line["reminders_enqueued"] != float64(0) || line["marked_overdue"] != float64(1) {
		t.Errorf("Tokyo's log line at 08:30 local: %v, want marked_overdue 1, reminders_enqueued 0, reminders_deferred_until 09:00", line)
	}
	got = d.overdue(t, w, auckland, 1)
	if want := (overdueOutcome{Marked: 1, Enqueued: 1}); got != want {
		t.Errorf("Auckland's sweep at 12:30 local (the same instant): result %+v, want %+v", got, want)
	}
	if line := overdueLogLine(t, logs.String(), auckland.ID); line["reminders_deferred_until"] != nil {
		t.Errorf("Auckland's log line: %v, want no reminders_deferred_until", line)
	}
	d.waitReminders(t)
	if rows := d.e.reminderRows(t, auckland, aucklandInvoice); len(rows) != 1 || rows[0].Day != "2026-12-07" || rows[0].Status != "sent" {
		t.Errorf("Auckland's reminder rows %+v, want one sent for 2026-12-07", rows)
	}
	if rows := d.e.reminderRows(t, d.tn, tokyoInvoice); len(rows) != 0 {
		t.Errorf("Tokyo's reminder rows before 09:00 local: %+v, want none", rows)
	}
	if n := len(d.smtp.Messages()); n != 1 {
		t.Errorf("%d emails at 08:30 in Tokyo, want 1 (Auckland's)", n)
	}

	d.at(t, "2026-12-07", 9, 5)
	got = d.overdue(t, w, d.tn, 2)
	if want := (overdueOutcome{Enqueued: 1}); got != want {
		t.Errorf("Tokyo's sweep at 09:05 local: result %+v, want %+v", got, want)
	}
	d.waitReminders(t)
	if rows := d.e.reminderRows(t, d.tn, tokyoInvoice); len(rows) != 1 || rows[0].Day != "2026-12-07" || rows[0].Status != "sent" {
		t.Errorf("Tokyo's reminder rows after 09:05 local: %+v, want one sent for 2026-12-07", rows)
	}
	if n := len(d.smtp.Messages()); n != 2 {
		t.Errorf("%d emails after 09:05 in Tokyo, want 2", n)
	}
}

// TestReminderAskedForBeforeTheSendHourIsSent: REMINDER_SEND_HOUR defers
// only the sweep's reminders. At 08:30 in Tokyo with the hour 9, the
// sweep enqueues none, but a reminder asked for then (as POST
// /v1/invoices/{id}/reminders enqueues it: the tenant's day) is sent at
// once; the sweep at 09:05 then sends nothing more that day.
func TestReminderAskedForBeforeTheSendHourIsSent(t *testing.T) {
	t.Parallel()
	d := newReminderDayAt(t, "Asia/Tokyo", 9)
	id := d.e.addDueOn(t, d.tn, "DUE-DEC-6", "2026-12-06")

	early := d.at(t, "2026-12-07", 8, 30)
	if got := d.overdue(t, d.e.w, d.tn, 1); got.Enqueued != 0 || got.DeferredUntil != "09:00" {
		t.Fatalf("sweep at 08:30 local: result %+v, want no reminder enqueued, deferred until 09:00", got)
	}
	if got, want := d.remind(t, id, d.tn.Day(early)), (reminderOutcome{Sent: true}); got != want {
		t.Errorf("reminder asked for at 08:30 local: %+v, want %+v (not deferred)", got, want)
	}
	if got := d.sentTo(t); len(got) != 1 || got[0] != id {
		t.Fatalf("emails for invoices %v after the reminder asked for at 08:30, want [%d]", got, id)
	}

	d.at(t, "2026-12-07", 9, 5)
	if got := d.overdue(t, d.e.w, d.tn, 2); got != (overdueOutcome{}) {
		t.Errorf("sweep at 09:05 local after the reminder asked for: result %+v, want nothing enqueued or deferred", got)
	}
	d.waitReminders(t)
	if got := d.sentTo(t); len(got) != 1 {
		t.Errorf("emails for invoices %v after the sweep at 09:05, want the one asked for only", got)
	}
}

// TestSweepTickAheadOfTheWorkersClockIsJudgedAtTheTick: a scheduler whose
// clock runs ahead of a worker's fires its tick first (the sweep starts at
// the fastest replica's tick), so the worker may run the tick's
// invoices:overdue a moment before the tick by its own clock. The run is
// the tick's: with REMINDER_SEND_HOUR=9 the 09:00 tick of Tokyo's day,
// run 2 s before it by the worker's clock, enqueues the day's reminders
// (judged at 08:59:58 it deferred them to the 10:00 tick, and with the
// hour 23 to the next day), and the midnight tick run 2 s early judges due
// dates against the new day. A tick further ahead than a clock may
// disagree (an hour) is judged on the worker's clock.
func TestSweepTickAheadOfTheWorkersClockIsJudgedAtTheTick(t *testing.T) {
	t.Parallel()
	d := newReminderDayAt(t, "Asia/Tokyo", 9)
	dueDec6 := d.e.addDueOn(t, d.tn, "DUE-DEC-6", "2026-12-06")
	dueDec7 := d.e.addDueOn(t, d.tn, "DUE-DEC-7", "2026-12-07")

	nine := d.at(t, "2026-12-07", 9, 0)
	d.e.clock.Store(new(nine.Add(-time.Hour)))
	if got, want := d.overdue(t, d.e.w, d.tn, nine.Unix()), (overdueOutcome{Marked: 1, DeferredUntil: "09:00"}); got != want {
		t.Errorf("09:00 tick run at 08:00 by the worker's clock: result %+v, want %+v (judged on the worker's clock)", got, want)
	}
	d.e.clock.Store(new(nine.Add(-2 * time.Second)))
	if got, want := d.overdue(t, d.e.w, d.tn, nine.Unix()), (overdueOutcome{Enqueued: 1}); got != want {
		t.Errorf("09:00 tick run at 08:59:58 by the worker's clock: result %+v, want %+v (the tick's reminders)", got, want)
	}
	d.waitReminders(t)
	if rows := d.e.reminderRows(t, d.tn, dueDec6); len(rows) != 1 || rows[0].Day != "2026-12-07" || rows[0].Status != "sent" {
		t.Errorf("reminder rows of the invoice due 6 December: %+v, want one sent for 2026-12-07", rows)
	}

	midnight := d.at(t, "2026-12-08", 0, 0)
	d.e.clock.Store(new(midnight.Add(-2 * time.Second)))
	if got, want := d.overdue(t, d.e.w, d.tn, midnight.Unix()), (overdueOutcome{Marked: 1, DeferredUntil: "09:00"}); got != want {
		t.Errorf("midnight tick of 8 December run at 23:59:58 by the worker's clock: result %+v, want %+v", got, want)
	}
	if status := d.e.invoiceStatus(t, d.tn, dueDec7); status != "overdue" {
		t.Errorf("invoice due 7 December after the midnight tick of 8 December: %s, want overdue", status)
	}
}
