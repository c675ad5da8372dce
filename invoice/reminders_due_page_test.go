package invoice_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
)

// TestRemindersDuePageReadsItsOwnRows: a page of RemindersDue reads about
// as many invoices as it returns, however many overdue invoices come after
// it, so that the sweep's pages through a large tenant's overdue invoices
// cost in all what the invoices do. 2,000 of 20,000 invoices are overdue,
// every tenth, and the tables analyzed (as autovacuum leaves them): a page
// of 100 read every overdue invoice after its key (2,000 from the start,
// 1,000 from the middle), each with its total computed and its reminders
// looked up, to sort them and keep 100, so a sweep of N overdue invoices
// read N²/(2 × page) rows. The rows are counted by the table's statistics
// of the transaction (pg_stat_xact_user_tables), whatever plan reads them.
func TestRemindersDuePageReadsItsOwnRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const invoices, every, page = 20000, 10, 100
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO customers (name, email) VALUES ('c', 'c@example.org')`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO invoices (number, customer_id, status, currency, due_date, amount)
			SELECT 'N' || g, (SELECT id FROM customers), CASE WHEN g % $2 = 0 THEN 'overdue' ELSE 'paid' END,
			       'EUR', timestamptz '2026-02-01 00:00Z', 10
			  FROM generate_series(1, $1::int) g`, invoices, every)
		return err
	})
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `ANALYZE invoices, customers, line_items, invoice_reminders`)
		return err
	})
	today := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, after := range []int64{0, invoices / 2} {
		b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
			ids, err := invoice.RemindersDue(ctx, tx, today, after, page)
			if err != nil {
				return err
			}
			if len(ids) != page || ids[0] != after+every {
				t.Errorf("after %d: %d ids from %v, want %d from %d", after, len(ids), ids[:min(len(ids), 1)], page, after+every)
			}
			var read int64
			if err := tx.QueryRow(ctx, `SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
				  FROM pg_stat_xact_user_tables WHERE schemaname = $1 AND relname = 'invoices'`, b.acme.Schema).Scan(&read); err != nil {
				return err
			}
			// The plan's reads around a page vary a little (101 to 201
			// seen); before, 2,001 and 1,000.
			if read > 4*page {
				t.Errorf("after %d: a page of %d invoices read %d rows of invoices, want at most %d", after, page, read, 4*page)
			}
			return nil
		})
	}
}

// TestRemindersDueRunsWithoutJIT: a page of RemindersDue runs with JIT
// compilation off in its transaction. On a large tenant the page's
// estimated cost can pass jit_above_cost, and compiling it then costs
// several times what running it does (JIT forced on a page of 500 of
// 300,000 overdue invoices: 3.1-4.8 s of it against 28-35 ms run without).
// The transaction turns JIT on first, so the check holds whatever the
// server's default.
func TestRemindersDueRunsWithoutJIT(t *testing.T) {
	t.Parallel()
	b := setup(t)
	today := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL jit = on"); err != nil {
			return err
		}
		if _, err := invoice.RemindersDue(ctx, tx, today, 0, 100); err != nil {
			return err
		}
		var jit string
		if err := tx.QueryRow(ctx, "SELECT current_setting('jit')").Scan(&jit); err != nil {
			return err
		}
		if jit != "off" {
			t.Errorf("jit = %s in the transaction of a page of RemindersDue, want off", jit)
		}
		return nil
	})
}
