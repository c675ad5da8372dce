package invoice

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
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

// SQL of the reminder protocol.
const (
	anySentSQL = `
SELECT to_char(sent_on, 'YYYY-MM-DD') FROM invoice_reminders
 WHERE invoice_id = $1 AND sent_on = ANY($2::date[]) AND status = 'sent'
 ORDER BY sent_on
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
   SET status = $3, recipient = $4, sent_at = CASE WHEN $3 = 'sent' THEN now() END
 WHERE invoice_id = $1 AND sent_on = ANY($2::date[])`
)

// date is the SQL date parameter of day: its calendar day in UTC.
func date(day time.Time) string { return day.UTC().Format(time.DateOnly) }

// dates returns the distinct UTC dates of days, in ascending order: the
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
	// ReminderSent.
	SentOn string
}

// ClaimReminder claims the reminders of invoice id on each of days (their
// UTC dates): a reminder run claims its task's day, and also the day it
// runs on when that is later (a retry, or a wait in a backlog, past
// midnight UTC), so that this day's sweep does not send a second email.
//
// When one of those days has a sent reminder, it returns ReminderSent with
// that day and claims nothing. Otherwise it records each day's reminder as
// pending unless one exists, then locks those rows, in date order, until
// tx ends, and returns ReminderSent if a concurrent run sent one
// meanwhile. The locks make a concurrent run of the same reminder wait
// until this transaction ends, and then see what it recorded.
func ClaimReminder(ctx context.Context, tx pgx.Tx, id int64, recipient string, days ...time.Time) (Claim, error) {
	ds := dates(days)
	if len(ds) == 0 {
		return Claim{}, fmt.Errorf("claim reminder of invoice %d: no day", id)
	}
	var sentOn string
	switch err := tx.QueryRow(ctx, anySentSQL, id, ds).Scan(&sentOn); {
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
// id on days (the days given to ClaimReminder): sent (with the time) or
// failed.
func FinishReminder(ctx context.Context, tx pgx.Tx, id int64, status ReminderStatus, recipient string, days ...time.Time) error {
	if _, err := tx.Exec(ctx, finishReminderSQL, id, dates(days), string(status), recipient); err != nil {
		return fmt.Errorf("record reminder of invoice %d %s: %w", id, status, err)
	}
	return nil
}
