package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
)

// TestRenderOutlastingIdleInTransactionTimeoutIsStored: a PDF render runs
// between the two round trips of its unit, the transaction open and idle
// (it holds the invoice's render lock). A server whose
// idle_in_transaction_session_timeout is shorter than a render (and the
// store's write and fsyncs) must not end it under the render: every retry
// of a render that long would fail alike, and the task be archived.
// Before, the server ended the session and the record failed (25P03).
func TestRenderOutlastingIdleInTransactionTimeoutIsStored(t *testing.T) {
	t.Parallel()
	e := newHandlerEnvSetting(t, nil, "idle_in_transaction_session_timeout", "250") // milliseconds
	tn := e.provision(t, "idle-render", "Idle Render GmbH")
	id := e.addInvoice(t, tn, acmeCustomer, acmeInvoice)
	h := *e.h
	var killed bool
	worker.SetBeforeRender(&h, func(ctx context.Context) {
		// The render goes on once the unit's session has been idle in its
		// transaction for 8 times the server's timeout, or the server ended it.
		testenv.WaitFor(t, 30*time.Second, "the render's session idle in its transaction past the timeout, or ended", func() bool {
			var idle, longIdle int
			err := e.pool.QueryRow(e.ctx, `SELECT count(*), count(*) FILTER (WHERE state_change < pg_catalog.now() - interval '2 s')
				FROM pg_catalog.pg_stat_activity
				WHERE datname = pg_catalog.current_database() AND state = 'idle in transaction'`).Scan(&idle, &longIdle)
			if err != nil {
				t.Error(err)
				return true
			}
			killed = idle == 0
			return killed || longIdle > 0
		})
	})
	w := workertest.New(&h, worker.MuxOptions{Logger: discardLogger()})
	if err := w.Work(e.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: id}); err != nil {
		t.Fatalf("render that outlasted idle_in_transaction_session_timeout (session ended by the server: %t): %v, want nil", killed, err)
	}
	if row, ok := e.documentRow(t, tn, id); !ok || row.StorageKey != invoice.DocumentKey(id) {
		t.Errorf("document row %+v, %t; want the render recorded", row, ok)
	}
}
