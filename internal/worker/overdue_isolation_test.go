package worker_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestMarkOverdueOnARepeatableReadDatabaseWaitsForAnEdit: on a tenant
// database whose default_transaction_isolation is repeatable read or
// serializable, an invoices:overdue whose marking waited for another
// write of a sent invoice past its due date (an edit in flight) marks it
// overdue once that write committed: the marking runs at read committed,
// where PostgreSQL checks the committed row against the statement's
// condition again. Before, the row was newer than the statement's
// snapshot and the marking was refused (SQLSTATE 40001): the task failed,
// and no invoice of the tenant was marked nor reminded until its retry.
func TestMarkOverdueOnARepeatableReadDatabaseWaitsForAnEdit(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			e := newHandlerEnvSetting(t, nil, "default_transaction_isolation", level)
			acme := e.provision(t, "marked", "Marked Ltd")
			today := acme.Day(time.Now())
			e.setToday(t, today)
			id := e.addDueOn(t, acme, "DUE-YESTERDAY", dayAfter(t, today, -1))

			// An edit of the invoice, not yet committed.
			tx, err := e.pool.BeginTx(e.ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(e.ctx)
			invoices := pgx.Identifier{acme.Schema, "invoices"}.Sanitize()
			if _, err := tx.Exec(e.ctx, `UPDATE `+invoices+` SET updated_at = now() WHERE id = $1`, id); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- e.work(tasks.InvoicesOverdue{TenantID: acme.ID, Tick: 1}) }()
			testenv.WaitFor(t, 30*time.Second, "the marking to wait for the edit in flight", func() bool {
				n, err := testenv.LockWaiters(e.ctx, e.pool, "status = 'overdue'")
				return err == nil && n > 0
			})
			if err := tx.Commit(e.ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Errorf("invoices:overdue after its marking waited for an edit: %v, want the invoice marked", err)
			}
			if got := e.invoiceStatus(t, acme, id); got != "overdue" {
				t.Errorf("invoice due yesterday after the sweep: %s, want overdue", got)
			}
		})
	}
}
