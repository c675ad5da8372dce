package worker_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestSweepDocumentsRemovesDeletedInvoicesPDFs: sweep:documents, through
// the production chain, enqueues one documents:prune per active tenant
// (none for a suspended one); each removes the PDF of an invoice the app
// deleted after its render and keeps the PDFs still recorded, and the
// prune of a tenant whose documents cannot be checked (its
// invoice_documents table gone) fails alone, to be retried, while the
// others complete. A rerun of the tick enqueues nothing new.
func TestSweepDocumentsRemovesDeletedInvoicesPDFs(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	c := invoice.Customer{Name: "Zoë Müller", Email: "zoe@example.com"}
	stored := func(tn tenantctx.Tenant, id int64) bool {
		_, err := os.Stat(filepath.Join(e.docs.Root(), tn.ID, filepath.FromSlash(invoice.DocumentKey(id))))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}
	type rendered struct {
		tn         tenantctx.Tenant
		kept, gone int64
	}
	var all []rendered
	for _, slug := range []string{"acme", "globex", "broken"} {
		tn := e.provision(t, slug, slug)
		r := rendered{tn: tn}
		r.kept = e.addInvoice(t, tn, c, invoice.New{Number: slug + "-1", Lines: []invoice.Line{line("Łódź", "1", "10.00")}})
		r.gone = e.addInvoice(t, tn, c, invoice.New{Number: slug + "-2", Lines: []invoice.Line{line("Ωmega", "2", "5.00")}})
		for _, id := range []int64{r.kept, r.gone} {
			if err := e.work(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: id}); err != nil {
				t.Fatal(err)
			}
		}
		e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "DELETE FROM invoices WHERE id = $1", r.gone)
			return err
		})
		all = append(all, r)
	}
	// The third tenant's documents cannot be checked.
	broken := all[2]
	e.inTenant(t, broken.tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DROP TABLE invoice_documents")
		return err
	})

	suspended := e.provision(t, "suspended", "Suspended")
	if _, err := e.catalog.SetStatus(e.ctx, suspended.ID, tenantctx.StatusSuspended); err != nil {
		t.Fatal(err)
	}

	const tick = 1767225600
	for range 2 {
		if err := e.work(tasks.SweepDocuments{Tick: tick}); err != nil {
			t.Fatalf("sweep:documents: %v", err)
		}
	}
	prunes := pendingOfType(t, e.inspector, tasks.QueueLow, tasks.TypeDocumentsPrune)
	if len(prunes) != len(all) {
		t.Fatalf("sweep enqueued %d documents:prune tasks, want one per active tenant (%d)", len(prunes), len(all))
	}
	failed := map[string]error{}
	for _, info := range prunes {
		p := decodePayload[tasks.DocumentsPrune](t, info)
		if info.ID != p.Spec().TaskID || p.Tick != tick || p.TenantID == suspended.ID {
			t.Errorf("task %s carries %+v", info.ID, p)
		}
		failed[p.TenantID] = e.w.WorkRaw(e.ctx, info.Type, info.Payload)
	}
	for _, r := range all[:2] {
		if err := failed[r.tn.ID]; err != nil {
			t.Errorf("%s: documents:prune: %v", r.tn.Slug, err)
		}
		if !stored(r.tn, r.kept) || stored(r.tn, r.gone) {
			t.Errorf("%s: recorded PDF stored %v, deleted invoice's PDF stored %v; want true, false", r.tn.Slug, stored(r.tn, r.kept), stored(r.tn, r.gone))
		}
	}
	if err := failed[broken.tn.ID]; err == nil {
		t.Error("the prune of the tenant whose documents could not be checked completed; want it to fail and be retried")
	}
	if !stored(broken.tn, broken.kept) || !stored(broken.tn, broken.gone) {
		t.Error("the tenant whose documents could not be checked lost a PDF")
	}
}
