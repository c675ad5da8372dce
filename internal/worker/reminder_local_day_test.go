package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/internal/worker"
)

// newReminderDayIn is newReminderDay for a tenant in zone. Its handlers'
// clock is the test's to set (at); d.day is unset.
func newReminderDayIn(t *testing.T, zone string) *reminderDay {
	t.Helper()
	return newReminderDayAt(t, zone, 0)
}

// newReminderDayAt is newReminderDayIn with the handlers'
// ReminderSendHour set to sendHour (REMINDER_SEND_HOUR).
func newReminderDayAt(t *testing.T, zone string, sendHour int) *reminderDay {
	t.Helper()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	e.h.ReminderSendHour = sendHour
	tn := e.provision(t, "acme", "Acme")
	tn, err := e.h.Tenancy.SetTimeZone(e.ctx, tn.ID, zone, "test")
	if err != nil {
		t.Fatalf("SetTimeZone(%s): %v", zone, err)
	}
	d := &reminderDay{e: e, smtp: srv, tn: tn}
	startWorker(t, e, e.h, worker.ServerOptions{Concurrency: 2})
	return d
}

// at sets the handlers' clock to hh:mm on day (YYYY-MM-DD) in the
// tenant's time zone and returns that instant.
func (d *reminderDay) at(t *testing.T, day string, hh, mm int) time.Time {
	t.Helper()
	date, err := time.Parse(time.DateOnly, day)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(date.Year(), date.Month(), date.Day(), hh, mm, 0, 0, d.tn.Location())
	d.e.clock.Store(&now)
	return now
}

// TestReminderOncePerLocalDay: a reminder's once-a-day key is the tenant's
// calendar day, not the UTC one. With the hourly sweep, an invoice due
// 2026-12-06 is reminded at the start of 7 December in the tenant's zone;
// a sweep at the end of that local day, on the next UTC date (New York:
// 04:59 UTC on 8 December; Tokyo: 7 December, the first sweep being on
// 6 December UTC), sends no second email, nor does a reminder asked for
// then; the first sweep of 8 December local sends the next one.
func TestReminderOncePerLocalDay(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"America/New_York", "Asia/Tokyo"} {
		t.Run(zone, func(t *testing.T) {
			t.Parallel()
			d := newReminderDayIn(t, zone)
			id := d.e.addDueOn(t, d.tn, "DUE-DEC-6", "2026-12-06")

			first := d.at(t, "2026-12-07", 0, 5)
			d.sweep(t, 1)
			if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{id}) {
				t.Fatalf("after the sweep at %s: emails for invoices %v, want [%d]", first.UTC().Format(time.RFC3339), got, id)
			}

			last := d.at(t, "2026-12-07", 23, 59)
			if first.UTC().Format(time.DateOnly) == last.UTC().Format(time.DateOnly) {
				t.Fatalf("sweeps at %s and %s are on one UTC date: the test needs two", first.UTC(), last.UTC())
			}
			d.sweep(t, 2)
			if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{id}) {
				t.Fatalf("after a second sweep the same local day (%s): emails for invoices %v, want one for %d",
					last.UTC().Format(time.RFC3339), got, id)
			}
			if got, want := d.remind(t, id, "2026-12-07"), (reminderOutcome{Reason: "already sent today"}); got != want {
				t.Errorf("reminder asked for at the end of the local day: %+v, want %+v", got, want)
			}
			if rows := d.e.reminderRows(t, d.tn, id); len(rows) != 1 || rows[0].Day != "2026-12-07" || rows[0].Status != "sent" {
				t.Errorf("reminder rows %+v, want one sent row for 2026-12-07", rows)
			}

			d.at(t, "2026-12-08", 0, 5)
			d.sweep(t, 3)
			if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{id, id}) {
				t.Fatalf("after the next local day's sweep: emails for invoices %v, want two for %d", got, id)
			}
			rows := d.e.reminderRows(t, d.tn, id)
			if len(rows) != 2 || rows[0].Day != "2026-12-07" || rows[1].Day != "2026-12-08" || rows[1].Status != "sent" {
				t.Errorf("reminder rows %+v, want 2026-12-07 and 2026-12-08 sent", rows)
			}
		})
	}
}

// TestReminderSentUnderUTCDateCountsToday: on the upgrade day, a reminder
// row written before reminders' days were the tenant's (or by a worker of
// that release, during a rolling upgrade) is keyed by its UTC date. One
// sent earlier the same local day counts for that day: a reminder of the
// local day and the sweep send nothing more. One sent before the local day
// began does not: that invoice is reminded.
func TestReminderSentUnderUTCDateCountsToday(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		zone string
		// The rows as a worker keying by UTC date wrote them: sent_on,
		// sent_at (UTC) today and before today began (local).
		todayOn, todayAt, beforeOn, beforeAt string
		hh, mm                               int // the run's local time on 2026-12-07
	}{
		// 05:00 on the 7th in Tokyo is 20:00 UTC on the 6th; 23:00 on
		// the 6th in Tokyo is 14:00 UTC.
		{"Asia/Tokyo", "2026-12-06", "2026-12-06T20:00:00Z", "2026-12-06", "2026-12-06T14:00:00Z", 10, 0},
		// 19:00 on the 7th in New York is 00:00 UTC on the 8th; 18:00 on
		// the 6th is 23:00 UTC.
		{"America/New_York", "2026-12-08", "2026-12-08T00:00:00Z", "2026-12-06", "2026-12-06T23:00:00Z", 20, 30},
	} {
		t.Run(c.zone, func(t *testing.T) {
			t.Parallel()
			d := newReminderDayIn(t, c.zone)
			sentToday := d.e.addDueOn(t, d.tn, "SENT-TODAY", "2026-12-01")
			sentBefore := d.e.addDueOn(t, d.tn, "SENT-BEFORE", "2026-12-01")
			d.e.inTenant(t, d.tn, func(ctx context.Context, tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `UPDATE invoices SET status = 'overdue'`); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO invoice_reminders (invoice_id, sent_on, recipient, status, sent_at)
					VALUES ($1, $2::date, 'x@example.org', 'sent', $3::timestamptz),
					       ($4, $5::date, 'x@example.org', 'sent', $6::timestamptz)`,
					sentToday, c.todayOn, c.todayAt, sentBefore, c.beforeOn, c.beforeAt)
				return err
			})

			d.at(t, "2026-12-07", c.hh, c.mm)
			if got, want := d.remind(t, sentToday, "2026-12-07"), (reminderOutcome{Reason: "already sent today"}); got != want {
				t.Errorf("reminder of the local day after one sent today under the UTC date %s: %+v, want %+v", c.todayOn, got, want)
			}
			d.sweep(t, 1)
			if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{sentBefore}) {
				t.Fatalf("emails for invoices %v, want one for %d (reminded before the local day began) only", got, sentBefore)
			}
			if rows := d.e.reminderRows(t, d.tn, sentToday); len(rows) != 1 || rows[0].Day != c.todayOn {
				t.Errorf("reminder rows %+v, want only the one written under the UTC date %s", rows, c.todayOn)
			}
		})
	}
}
