package invoice

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// markOverdueSQL moves every sent invoice whose due date is before day $1
// (the tenant's current date, computed in Go) to overdue. due_date is a
// timestamptz whose date is read in UTC (documents and reminders print
// it so), so the day is compared as its midnight UTC, written out: a
// date compared with a timestamptz as it is would be the date's midnight
// in the session's TimeZone, which is the server's, database's or role's
// default, and an invoice would turn overdue hours early (west of UTC)
// or late (east of it). PostgreSQL's session TimeZone and zone database
// play no part.
const markOverdueSQL = `
UPDATE invoices SET status = 'overdue', updated_at = now()
 WHERE status = 'sent' AND due_date < ` + dayStartUTC1

// dayStartUTC1 and dayStartUTC2 are the midnight UTC of the date in
// parameter $1 or $2, as a timestamptz whatever the session's TimeZone.
const (
	dayStartUTC1 = `($1::date::timestamp AT TIME ZONE 'UTC')`
	dayStartUTC2 = `($2::date::timestamp AT TIME ZONE 'UTC')`
)

// MarkOverdue marks every sent invoice overdue whose due date is before
// today's date in today's location (the tenant's time zone:
// tenantctx.Tenant.Today), in one statement, and returns how many it
// marked. An invoice due today is not overdue yet.
func MarkOverdue(ctx context.Context, tx pgx.Tx, today time.Time) (int64, error) {
	tag, err := tx.Exec(ctx, markOverdueSQL, date(today))
	if err != nil {
		return 0, fmt.Errorf("mark overdue invoices: %w", err)
	}
	return tag.RowsAffected(), nil
}

// unremindedSQL pages (keyset on id) through overdue invoices without a
// sent reminder on day $2.
const unremindedSQL = `
SELECT i.id FROM invoices i
 WHERE i.status = 'overdue' AND i.id > $1
   AND NOT EXISTS (SELECT 1 FROM invoice_reminders r
                    WHERE r.invoice_id = i.id AND r.sent_on = $2::date AND r.status = 'sent')
 ORDER BY i.id
 LIMIT $3`

// Unreminded returns up to limit ids, above after and in id order, of
// overdue invoices that have no sent reminder on day (its date in its own
// location: pass a time in the tenant's time zone).
func Unreminded(ctx context.Context, tx pgx.Tx, day time.Time, after int64, limit int) ([]int64, error) {
	rows, err := tx.Query(ctx, unremindedSQL, after, date(day), limit)
	if err != nil {
		return nil, fmt.Errorf("list unreminded overdue invoices after %d: %w", after, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list unreminded overdue invoices after %d: %w", after, err)
	}
	return ids, nil
}
