package invoice_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
)

// TestMarkOverdueJudgesTheGivenLocalDate: MarkOverdue and MarkOverdueIfDue
// mark an invoice once its due date is before today's date as today's own
// location has it, whatever the session's TimeZone: due today is not
// overdue, due yesterday is. 00:30 on 2 March in Auckland is still 1 March
// in UTC (and in the session's zone, set far east and far west in turn).
// A due date is stored as its midnight UTC, as invoice.Create stores it
// and its documents read it; a session far west of UTC compared it with
// its own midnight, 11 hours later, and marked the invoice due today.
func TestMarkOverdueJudgesTheGivenLocalDate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	auckland, err := time.LoadLocation("Pacific/Auckland")
	if err != nil {
		t.Fatal(err)
	}
	today := time.Date(2026, 3, 2, 0, 30, 0, 0, auckland) // 2026-03-01 11:30 UTC
	for _, sessionZone := range []string{"Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"} {
		b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('TimeZone', $1, true)`, sessionZone); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM invoices`); err != nil {
				return err
			}
			c := invoice.Customer{Name: "c", Email: "c@x"}
			ids, err := invoice.Create(ctx, tx,
				invoice.New{Number: "today", Status: "sent", Customer: c},
				invoice.New{Number: "yesterday", Status: "sent", Customer: c},
				invoice.New{Number: "today-one", Status: "sent", Customer: c},
				invoice.New{Number: "yesterday-one", Status: "sent", Customer: c},
			)
			if err != nil {
				return err
			}
			for i, due := range []string{"2026-03-02", "2026-03-01", "2026-03-02", "2026-03-01"} {
				if _, err := tx.Exec(ctx, `UPDATE invoices SET due_date = $2::date::timestamp AT TIME ZONE 'UTC' WHERE id = $1`, ids[i], due); err != nil {
					return err
				}
			}
			for i, want := range map[int]bool{2: false, 3: true} {
				if marked, err := invoice.MarkOverdueIfDue(ctx, tx, ids[i], today); err != nil || marked != want {
					t.Errorf("session TimeZone %s: MarkOverdueIfDue(invoice due %s, today %s) = %v, %v; want %v",
						sessionZone, []string{"", "", "2026-03-02", "2026-03-01"}[i], today.Format(time.DateOnly), marked, err, want)
				}
			}
			// The same instant in UTC is 1 March: nothing is overdue yet.
			if n, err := invoice.MarkOverdue(ctx, tx, today.UTC()); err != nil || n != 0 {
				t.Errorf("session TimeZone %s: MarkOverdue(today %s) = %d, %v; want 0", sessionZone, today.UTC().Format(time.DateOnly), n, err)
			}
			if n, err := invoice.MarkOverdue(ctx, tx, today); err != nil || n != 1 {
				t.Errorf("session TimeZone %s: MarkOverdue(today %s) = %d, %v; want 1 (the invoice due 2026-03-01)", sessionZone, today.Format(time.DateOnly), n, err)
			}
			var statuses []string
			rows, err := tx.Query(ctx, `SELECT status FROM invoices ORDER BY id`)
			if err != nil {
				return err
			}
			if statuses, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return err
			}
			if want := []string{"sent", "overdue", "sent", "overdue"}; len(statuses) != 4 || statuses[0] != want[0] || statuses[1] != want[1] || statuses[2] != want[2] || statuses[3] != want[3] {
				t.Errorf("session TimeZone %s: statuses %v, want %v", sessionZone, statuses, want)
			}
			return nil
		})
	}
}
