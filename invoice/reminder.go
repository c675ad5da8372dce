package invoice

import (
	"context"
	"fmt"
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
 WHERE invoice_id = $1 AND sent_on = $2::date`
)

// date is the SQL date parameter of day: its calendar day in UTC.
func date(day time.Time) string { return day.UTC().Format(time.DateOnly) }

// ClaimReminder records the reminder of invoice id on day (its UTC date)
// as pending unless one exists, then locks that row until tx ends and
// returns its status. The lock makes a concurrent run of the same reminder
// wait until this transaction ends, and then see what it recorded.
func ClaimReminder(ctx context.Context, tx pgx.Tx, id int64, day time.Time, recipient string) (ReminderStatus, error) {
	if _, err := tx.Exec(ctx, claimReminderSQL, id, date(day), recipient); err != nil {
		return "", fmt.Errorf("claim reminder of invoice %d: %w", id, err)
	}
	var status string
	if err := tx.QueryRow(ctx, lockReminderSQL, id, date(day)).Scan(&status); err != nil {
		return "", fmt.Errorf("lock reminder of invoice %d: %w", id, err)
	}
	return ReminderStatus(status), nil
}

// FinishReminder records the outcome of the claimed reminder of invoice id
// on day: sent (with the time) or failed.
func FinishReminder(ctx context.Context, tx pgx.Tx, id int64, day time.Time, status ReminderStatus, recipient string) error {
	if _, err := tx.Exec(ctx, finishReminderSQL, id, date(day), string(status), recipient); err != nil {
		return fmt.Errorf("record reminder of invoice %d %s: %w", id, status, err)
	}
	return nil
}
