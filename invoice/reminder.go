package invoice

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/tenantctx"
)

// ReminderStatus is the state of one reminder (one invoice, one day) in
// invoice_reminders.
type ReminderStatus string

// The reminder states.
const (
	// ReminderPending: claimed, not sent yet (or the sender died).
	ReminderPending ReminderStatus = "pending"
	// ReminderSent: the mail server accepted the message.
	ReminderSent ReminderStatus = "sent"
	// ReminderFailed: the last send failed; a retry sends again.
	ReminderFailed ReminderStatus = "failed"
)

// SQL of the reminder protocol. anySentSQL's second test finds a reminder
// sent since the start of today ($3) whatever its day: one keyed by its
// UTC date, or by its date in a zone the tenant had before, has a date
// within two days of today's ($4) (maxKeyDays), so that test reads at most
// five days' entries of the (invoice_id, sent_on) unique index.
const (
	anySentSQL = `
SELECT CASE WHEN sent_on = ANY($2::date[]) THEN to_char(sent_on, 'YYYY-MM-DD') ELSE $4::text END AS day
  FROM invoice_reminders
 WHERE invoice_id = $1 AND status = 'sent'
   AND (sent_on = ANY($2::date[])
        OR (sent_on BETWEEN $4::date - ` + maxKeyDays + ` AND $4::date + ` + maxKeyDays + `
            AND sent_at >= $3::timestamptz))
 ORDER BY day
 LIMIT 1`
	claimReminderSQL = `
INSERT INTO invoice_reminders (invoice_id, sent_on, recipient, status)
VALUES ($1, $2::date, $3, 'pending')
ON CONFLICT (invoice_id, sent_on) DO NOTHING`
	lockReminderSQL = `
SELECT status FROM invoice_reminders
 WHERE invoice_id = $1 AND sent_on = $2::date
   FOR UPDATE`
	finishReminderSQL = `
UPDATE invoice_reminders
   SET status = $3, recipient = $4, sent_at = CASE WHEN $3 = 'sent' THEN $5::timestamptz END
 WHERE invoice_id = $1 AND sent_on = ANY($2::date[])`
)

// maxKeyDays (a number in SQL) is how many days apart the dates of one
// instant in two time zones may be: UTC offsets run from -12 to +14 hours,
// so two zones' clocks are at most 26 hours apart and their dates at most
// two days (at 10:30 UTC it is the 11th in Pacific/Kiritimati and still
// the 9th in Pacific/Pago_Pago). A reminder row keyed by its date in one zone (UTC,
// or a zone the tenant had before it changed its time zone) that was sent
// during today in the tenant's zone has a date within maxKeyDays of
// today's: anySentSQL and remindersDueSQL look that far.
const maxKeyDays = "2"

// date is the SQL date parameter of day: its calendar day in its own
// location, not in UTC. The callers pass times in the tenant's time zone
// (tenantctx.Tenant.Today), or a reminder task's day (a date parsed as
// midnight UTC, which is that date).
func date(day time.Time) string { return day.Format(time.DateOnly) }

// dates returns the distinct dates of days, in ascending order: the
// order in which every run locks a reminder's rows, so two runs never wait
// for each other in a cycle.
func dates(days []time.Time) []string {
	out := make([]string, 0, len(days))
	for _, d := range days {
		out = append(out, date(d))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Claim is what ClaimReminder found.
type Claim struct {
	// Status is ReminderSent when the reminder of one of the days was
	// sent already (SentOn says which), else the status of the last day's
	// row: pending, or failed by an earlier run.
	Status ReminderStatus
	// SentOn is the date (YYYY-MM-DD) of the sent reminder when Status is
	// ReminderSent: one of the days, or today's date for a reminder sent
	// since today's start under another day's key (a UTC date, or a date
	// in the zone the tenant had before it changed its time zone).
	SentOn string
}

// ClaimReminder claims the reminders of invoice id on today and on each of
// days (their dates, each in its own location: the tenant's calendar
// days), today being the current time in the tenant's time zone
// (tenantctx.Tenant.Today): a reminder run claims its task's day, and also
// the day it runs on when that is another (a retry, or a wait in a
// backlog, past the tenant's midnight; an enqueuer whose clock runs
// ahead), so that this day's sweep does not send a second email.
//
// When one of those days has a sent reminder, it returns ReminderSent with
// that day and claims nothing. So it does when a reminder of id was sent
// at or after the start of today (tenantctx.StartOfDay), whatever its day,
// with today's date: rows written before reminders' days were the
// tenant's, or by a worker of the previous release during a rolling upgrade, are
// keyed by their UTC date, and so are the rows of a tenant that changed
// its time zone since by its dates in the zone it had (up to two days
// from today's: maxKeyDays); one sent earlier this local day must count
// for it. Otherwise it records each day's reminder as
// pending unless one exists, then locks those rows, in date order, until
// tx ends, and returns ReminderSent if a concurrent run sent one
// meanwhile. The locks make a concurrent run of the same reminder wait
// until this transaction ends, and then see what it recorded.
func ClaimReminder(ctx context.Context, tx pgx.Tx, id int64, recipient string, today time.Time, days ...time.Time) (Claim, error) {
	ds := dates(append([]time.Time{today}, days...))
	var sentOn string
	switch err := tx.QueryRow(ctx, anySentSQL, id, ds, tenantctx.StartOfDay(today), date(today)).Scan(&sentOn); {
	case err == nil:
		return Claim{Status: ReminderSent, SentOn: sentOn}, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return Claim{}, fmt.Errorf("claim reminder of invoice %d: %w", id, err)
	}
	var c Claim
	for _, d := range ds {
		if _, err := tx.Exec(ctx, claimReminderSQL, id, d, recipient); err != nil {
			return Claim{}, fmt.Errorf("claim reminder of invoice %d on %s: %w", id, d, err)
		}
		var status string
		if err := tx.QueryRow(ctx, lockReminderSQL, id, d).Scan(&status); err != nil {
			return Claim{}, fmt.Errorf("lock reminder of invoice %d on %s: %w", id, d, err)
		}
		c.Status = ReminderStatus(status)
		if c.Status == ReminderSent {
			return Claim{Status: ReminderSent, SentOn: d}, nil
		}
	}
	return c, nil
}

// FinishReminder records the outcome of the claimed reminders of invoice
// id on today and days (as given to ClaimReminder): sent, with today as
// sent_at (the run's current time, on the clock that ClaimReminder and
// RemindersDue judge the start of the tenant's day by), or failed.
func FinishReminder(ctx context.Context, tx pgx.Tx, id int64, status ReminderStatus, recipient string, today time.Time, days ...time.Time) error {
	ds := dates(append([]time.Time{today}, days...))
	if _, err := tx.Exec(ctx, finishReminderSQL, id, ds, string(status), recipient, today); err != nil {
		return fmt.Errorf("record reminder of invoice %d %s: %w", id, status, err)
	}
	return nil
}
