package invoice

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// markOverdueSQL moves every sent invoice past its due date to overdue.
const markOverdueSQL = `
UPDATE invoices SET status = 'overdue', updated_at = now()
 WHERE status = 'sent' AND due_date < now()`

// MarkOverdue marks every sent invoice past its due date overdue, in one
// statement, and returns how many it marked.
func MarkOverdue(ctx context.Context, tx pgx.Tx) (int64, error) {
	tag, err := tx.Exec(ctx, markOverdueSQL)
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
// overdue invoices that have no sent reminder on day (its UTC date).
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
