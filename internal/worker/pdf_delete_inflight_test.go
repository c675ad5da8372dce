package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// TestPDFOfInvoiceDeletionInFlightLeavesNoFile: the application deletes an
// invoice in a transaction that is still open when the render records its
// document, and commits while the record waits for it. The record then
// fails on the foreign key (the invoice it selected is gone), not with no
// row: the render must treat it as the invoice deleted meanwhile (remove
// the file it wrote, archive the task as not found), as it does when the
// deletion committed before the record. Before the fix the task failed
// with a foreign key violation, was retried, the retry found no invoice,
// and the deleted invoice's PDF stayed in the store for good.
func TestPDFOfInvoiceDeletionInFlightLeavesNoFile(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	a := e.provision(t, "inflight", "Inflight Tools")
	for _, rendered := range []bool{false, true} {
		id := e.addInvoice(t, a, acmeCustomer, acmeInvoice)
		if rendered { // a previous document: the record's ON CONFLICT path
			if err := e.work(tasks.InvoicePDF{TenantID: a.ID, InvoiceID: id}); err != nil {
				t.Fatal(err)
			}
			e.inTenant(t, a, func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `UPDATE invoices SET notes = 'Edited.' WHERE id = $1`, id)
				return err
			})
		}
		deleted, committed := make(chan struct{}), make(chan error, 1)
		h := *e.h
		worker.SetBeforeRender(&h, func(context.Context) {
			go func() {
				committed <- schema.InTenant(e.tenantCtx(a), e.pool, func(ctx context.Context, tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `DELETE FROM invoices WHERE id = $1`, id); err != nil {
						return err
					}
					close(deleted)
					// Commit once the render's record waits for this
					// transaction (a session of the test's database, the
					// server being shared, waiting in the record's INSERT
					// into invoice_documents).
					for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
						waiting, err := testenv.LockWaiters(ctx, e.pool, "invoice_documents")
						if err != nil {
							return err
						}
						if waiting > 0 {
							return nil
						}
					}
					return errors.New("the render's record never waited for the deletion")
				})
			}()
			<-deleted
		})
		w := workertest.New(&h, worker.MuxOptions{Logger: discardLogger()})
		err := w.Work(e.ctx, tasks.InvoicePDF{TenantID: a.ID, InvoiceID: id})
		if cerr := <-committed; cerr != nil {
			t.Fatalf("delete the invoice: %v", cerr)
		}
		if !errors.Is(err, invoice.ErrNotFound) {
			t.Errorf("rendered %v: PDF task of an invoice whose deletion committed during the record: %v, want invoice.ErrNotFound", rendered, err)
		}
		if _, info, err := e.docs.Open(e.ctx, a.ID, invoice.DocumentKey(id)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("rendered %v: document of the deleted invoice: %d bytes, %v; want none", rendered, info.Bytes, err)
		}
	}
}
