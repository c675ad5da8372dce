package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
)

// TestInfiniteDateInvoiceIsArchivedAtOnce: PostgreSQL's timestamptz takes
// 'infinity' and '-infinity', which no time.Time holds. An invoice whose
// due date or issue date the app stored that way fails the same way on
// every attempt, as a NaN amount does: its render and its reminder are
// archived at once with ErrInvalidData, not retried ten times with a
// scan error (and, for a '-infinity' due date, which the sweep marks
// overdue, again at every sweep).
func TestInfiniteDateInvoiceIsArchivedAtOnce(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	for _, c := range []struct{ column, value string }{
		{"due_date", "-infinity"},
		{"due_date", "infinity"},
		{"issued_at", "infinity"},
	} {
		id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice("INF-"+c.column+c.value))
		e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE invoices SET `+c.column+` = $2::timestamptz WHERE id = $1`, id, c.value)
			return err
		})
		for _, p := range []tasks.Payload{
			tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id},
			tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: acme.Day(time.Now())},
		} {
			err := e.work(p)
			if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, invoice.ErrInvalidData) {
				t.Errorf("%s %s: %T = %v, want asynq.SkipRetry wrapping invoice.ErrInvalidData", c.column, c.value, p, err)
			}
			if got := worker.PublicReason(err); got != worker.ReasonInvoiceInvalid {
				t.Errorf("%s %s: %T: public reason %q, want %q", c.column, c.value, p, got, worker.ReasonInvoiceInvalid)
			}
		}
	}
}
