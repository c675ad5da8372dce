package invoice

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invoicing/tenantworker/tenantctx"
)

// markOverdueIfDueSQL is markOverdueSQL for one invoice ($1), judged
// against day $2 (its midnight UTC, as markOverdueSQL): it sets
// updated_at as the sweep does (the column exists since schema version 1),
// so the app sees the change whichever of the two made it.
const markOverdueIfDueSQL = `
UPDATE invoices SET status = 'overdue', updated_at = now()
 WHERE id = $1 AND status = 'sent' AND due_date < ` + dayStartUTC2

// MarkOverdueIfDue marks invoice id overdue when it is sent and its due
// date is before today's date in today's location (the tenant's time
// zone, as MarkOverdue), and reports whether it did. A reminder asked for before the sweep marked the invoice uses it,
// so that it does not skip an invoice that is overdue in all but name.
// The marked row stays locked until tx ends.
func MarkOverdueIfDue(ctx context.Context, tx pgx.Tx, id int64, today time.Time) (bool, error) {
	tag, err := tx.Exec(ctx, markOverdueIfDueSQL, id, date(today))
	if err != nil {
		return false, fmt.Errorf("mark invoice %d overdue: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// QueueMarkOverdueIfDue queues MarkOverdueIfDue's statement into b, for a
// batch sent in the reminder's transaction (pgx.Tx.SendBatch) with the
// reads that follow it: when the batch has run, *marked (when not nil)
// says whether it marked the invoice.
func QueueMarkOverdueIfDue(b *pgx.Batch, id int64, today time.Time, marked *bool) {
	b.Queue(markOverdueIfDueSQL, id, date(today)).Exec(func(tag pgconn.CommandTag) error {
		if marked != nil {
			*marked = tag.RowsAffected() == 1
		}
		return nil
	})
}

// remindersDueSQL pages (keyset on id, along invoices_overdue_id_idx of
// schema version 6, so that a page reads about its own rows) through
// overdue invoices with
// something due whose reminder of day $2 was neither sent nor failed at
// the customer's current address, and that have no reminder sent at or
// after $4 (the start of that day), whatever its day: a row keyed by its
// UTC date, or by its date in a zone the tenant had before, has a date
// within two days of $2 (maxKeyDays), so both tests are lookups of the
// (invoice_id, sent_on) unique index.
// Something due: the total the document
// prints (pdf.Subtotal: the lines' totals, each rounded half away from
// zero to the currency's minor units, summed; without lines, the stored
// amount), rounded to the currency's minor units, is positive; the
// reminder skips the others ("nothing due") without using up the day, so
// a credit note, which stays overdue, would be enqueued at every sweep.
// Nor is an invoice listed that the reminder cannot load (Load's
// ErrInvalidData: a NaN amount, quantity or unit price, which numeric
// takes and which sorts above every number, so the total is "positive";
// an infinite issue or due date): its reminder is archived at once
// without using up the day, and would be enqueued, and archived, again
// at every sweep.
// minor_units is given the code as Load reads it (upper-cased in the "C"
// collation): the function of a schema before version 5 upper-cases in
// the database's collation, and a Turkish one made "isk" "İSK", an
// unknown code with 2 minor units instead of ISK's 0.
const remindersDueSQL = `
SELECT i.id FROM invoices i
  JOIN customers c ON c.id = i.customer_id
  CROSS JOIN LATERAL (SELECT minor_units(upper(btrim(i.currency) COLLATE "C")) AS places) m
  CROSS JOIN LATERAL (
        SELECT coalesce((SELECT sum(round(l.quantity * l.unit_price, m.places))
                           FROM line_items l WHERE l.invoice_id = i.id),
                        round(i.amount, m.places)) AS total) t
 WHERE i.status = 'overdue' AND i.id > $1
   AND NOT EXISTS (SELECT 1 FROM invoice_reminders r
                    WHERE r.invoice_id = i.id
                      AND ((r.sent_on = $2::date
                            AND (r.status = 'sent' OR (r.status = 'failed' AND r.recipient = c.email)))
                           OR (r.sent_on BETWEEN $2::date - ` + maxKeyDays + ` AND $2::date + ` + maxKeyDays + `
                               AND r.status = 'sent' AND r.sent_at >= $4::timestamptz)))
   AND t.total > 0 AND t.total <> 'NaN' AND i.amount <> 'NaN'
   AND isfinite(i.issued_at) AND (i.due_date IS NULL OR isfinite(i.due_date))
 ORDER BY i.id
 LIMIT $3`

// RemindersDue returns up to limit ids, above after and in id order, of
// overdue invoices with something due (a positive total as the document
// prints it) that Load can read (no NaN amount, quantity or unit price,
// no infinite issue or due date) and that still need their reminder of
// today, the current time in
// the tenant's time zone (tenantctx.Tenant.Today; its date is the
// reminder's day): none was sent that day, none failed that day at the
// customer's current address, and none was sent since the day began
// (tenantctx.StartOfDay) under another day's key, as rows written before
// reminders' days were the tenant's are (their UTC date), and those of a
// tenant that changed its time zone since (their date in the zone it had,
// up to two days from today's: maxKeyDays). A failed send is
// retried by its own task, and an address that can never work is not
// tried again the same day; once the customer's address changes, the next
// sweep tries the new one.
//
// It turns JIT compilation off for the rest of tx (SET LOCAL jit = off):
// the page's estimated cost passes jit_above_cost on a large tenant, and
// compiling took several times what running the page does.
func RemindersDue(ctx context.Context, tx pgx.Tx, today time.Time, after int64, limit int) ([]int64, error) {
	if _, err := tx.Exec(ctx, "SET LOCAL jit = off"); err != nil {
		return nil, fmt.Errorf("list overdue invoices due a reminder after %d: turn jit off: %w", after, err)
	}
	rows, err := tx.Query(ctx, remindersDueSQL, after, date(today), limit, tenantctx.StartOfDay(today))
	if err != nil {
		return nil, fmt.Errorf("list overdue invoices due a reminder after %d: %w", after, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list overdue invoices due a reminder after %d: %w", after, err)
	}
	return ids, nil
}
