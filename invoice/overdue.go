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
