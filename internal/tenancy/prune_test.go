package tenancy_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// pruneFixture is an active tenant with invoices, and their PDFs in the
// document store, each recorded in invoice_documents as a render records
// it.
type pruneFixture struct {
	*bundle
	tn  tenantctx.Tenant
	ids []int64
}

func setupPrune(t *testing.T, invoices int) *pruneFixture {
	t.Helper()
	b := setup(t)
	f := &pruneFixture{bundle: b, tn: b.active(t, "prune")}
	f.unit(t, func(ctx context.Context, tx pgx.Tx) error {
		news := make([]invoice.New, invoices)
		for i := range news {
			news[i] = invoice.New{Number: "P-" + string(rune('A'+i)), Status: "sent", Currency: "EUR",
				Customer: invoice.Customer{Name: "Zoë Müller", Email: "zoe@prune.example"},
				Lines:    []invoice.Line{{Description: "Łódź", Quantity: decimal.RequireFromString("1"), UnitPrice: decimal.RequireFromString("9.99")}}}
		}
		var err error
		f.ids, err = invoice.Create(ctx, tx, news...)
		return err
	})
	for _, id := range f.ids {
		f.put(t, id)
		f.unit(t, func(ctx context.Context, tx pgx.Tx) error {
			return f.record(ctx, tx, id)
		})
	}
	return f
}

// unit runs fn in a unit of work pinned to the fixture's tenant.
func (f *pruneFixture) unit(t *testing.T, fn func(context.Context, pgx.Tx) error) {
	t.Helper()
	if err := schema.InTenant(tenantctx.WithTenant(f.ctx, f.tn), f.pool, fn); err != nil {
		t.Fatal(err)
	}
}

// deleteInvoices deletes every invoice of the fixture's tenant, as the
// app would; their invoice_documents rows go with them.
func (f *pruneFixture) deleteInvoices(t *testing.T) {
	t.Helper()
	f.unit(t, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM invoices")
		return err
	})
}

// put writes a PDF of invoice id into the document store.
func (f *pruneFixture) put(t *testing.T, id int64) storage.DocumentInfo {
	t.Helper()
	info, err := f.docs.Put(f.ctx, f.tn.ID, invoice.DocumentKey(id), strings.NewReader("%PDF-1.4 invoice"))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// record records the stored PDF of invoice id, as a render does.
func (f *pruneFixture) record(ctx context.Context, tx pgx.Tx, id int64) error {
	return invoice.RecordDocument(ctx, tx, invoice.Document{InvoiceID: id, StorageKey: invoice.DocumentKey(id),
		SHA256: strings.Repeat("0", 64), Bytes: 16})
}

// stored reports whether the store holds key of the fixture's tenant.
func (f *pruneFixture) stored(t *testing.T, key string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(f.docs.Root(), f.tn.ID, filepath.FromSlash(key)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// TestPruneDocumentsRemovesThePDFsOfDeletedInvoices: an invoice the app
// deleted after its PDF was rendered (its invoice_documents row went with
// it) and a file a killed render left for an invoice deleted since lose
// their PDFs; the recorded documents and files under other keys stay, and
// a second prune removes nothing.
func TestPruneDocumentsRemovesThePDFsOfDeletedInvoices(t *testing.T) {
	t.Parallel()
	f := setupPrune(t, 3)
	deleted := f.ids[1]
	f.unit(t, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM invoices WHERE id = $1", deleted)
		return err
	})
	const leftByAKilledRender = 9999
	f.put(t, leftByAKilledRender)
	if _, err := f.docs.Put(f.ctx, f.tn.ID, "invoices/notes.txt", strings.NewReader("not a render's")); err != nil {
		t.Fatal(err)
	}

	res, err := f.svc.PruneDocuments(f.ctx, f.tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := tenancy.DocumentsPruned{TenantID: f.tn.ID, Slug: "prune", Checked: 4, Removed: 2}
	if res != want {
		t.Fatalf("PruneDocuments = %+v, want %+v", res, want)
	}
	for _, id := range f.ids {
		if got, want := f.stored(t, invoice.DocumentKey(id)), id != deleted; got != want {
			t.Errorf("invoice %d's PDF stored: %v, want %v", id, got, want)
		}
	}
	if f.stored(t, invoice.DocumentKey(leftByAKilledRender)) {
		t.Error("the PDF a killed render left for a deleted invoice is still stored")
	}
	if !f.stored(t, "invoices/notes.txt") {
		t.Error("a document under another key was removed")
	}

	again, err := f.svc.PruneDocuments(f.ctx, f.tn.ID)
	if err != nil || again.Removed != 0 || again.Checked != 2 {
		t.Fatalf("second PruneDocuments = %+v, %v; want 2 checked, none removed", again, err)
	}
}

// TestPruneDocumentsLeavesARenderInFlight: a render that has written its
// file and not yet committed its row (it holds its invoice's render lock
// from before its load) keeps its file, counted as busy; once its row
// commits, the next prune keeps it as recorded.
func TestPruneDocumentsLeavesARenderInFlight(t *testing.T) {
	t.Parallel()
	f := setupPrune(t, 1)
	var id int64
	f.unit(t, func(ctx context.Context, tx pgx.Tx) error {
		ids, err := invoice.Create(ctx, tx, invoice.New{Number: "P-new", Customer: invoice.Customer{Name: "Ada", Email: "ada@prune.example"}})
		id = ids[0]
		return err
	})

	locked, rendered := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(rendered) })
	defer release() // a failure below must not leave the render waiting
	done := make(chan error, 1)
	go func() {
		done <- schema.InTenant(tenantctx.WithTenant(f.ctx, f.tn), f.pool, func(ctx context.Context, tx pgx.Tx) error {
			b := &pgx.Batch{}
			if err := invoice.QueueLockRender(b, f.tn.Schema, id); err != nil {
				return err
			}
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
			f.put(t, id)
			close(locked)
			<-rendered
			return f.record(ctx, tx, id)
		})
	}()
	<-locked

	res, err := f.svc.PruneDocuments(f.ctx, f.tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Checked != 2 || res.Removed != 0 || res.Busy != 1 {
		t.Fatalf("PruneDocuments during a render = %+v, want 2 checked, 1 busy, none removed", res)
	}
	if !f.stored(t, invoice.DocumentKey(id)) {
		t.Fatal("the running render's file was removed")
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	res, err = f.svc.PruneDocuments(f.ctx, f.tn.ID)
	if err != nil || res.Removed != 0 || res.Busy != 0 || !f.stored(t, invoice.DocumentKey(id)) {
		t.Fatalf("PruneDocuments after the render = %+v, %v; want its recorded file kept", res, err)
	}
}

// TestPruneDocumentsSkipsADeletingTenant: a tenant being deleted is left
// to its tenant:destroy, which removes all its documents.
func TestPruneDocumentsSkipsADeletingTenant(t *testing.T) {
	t.Parallel()
	f := setupPrune(t, 1)
	f.deleteInvoices(t)
	if _, err := f.svc.RequestDeletion(f.ctx, f.tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.PruneDocuments(f.ctx, f.tn.ID)
	if err != nil || res.Skipped != "being deleted" || res.Removed != 0 {
		t.Fatalf("PruneDocuments of a deleting tenant = %+v, %v", res, err)
	}
	if !f.stored(t, invoice.DocumentKey(f.ids[0])) {
		t.Fatal("a deleting tenant's document was removed by the prune")
	}
}

// movingCatalog is a catalog whose first tenant read switches the tenant
// to database eu2 in the catalog right after it (a move switched it after
// the prune chose the database): every later read, the placement check
// under the writers' lock included, finds it there.
type movingCatalog struct {
	*storage.Postgres
	switchTo func(ctx context.Context) error
	reads    int
}

func (c *movingCatalog) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	t, err := c.Postgres.TenantByID(ctx, id)
	if c.reads++; c.reads == 1 && err == nil {
		if err := c.switchTo(ctx); err != nil {
			return tenantctx.Tenant{}, err
		}
	}
	return t, err
}

// TestPruneDocumentsOfATenantMovedMeanwhileRemovesNothing: a tenant whose
// placement names another database when read again under the writers'
// lock (a move switched it after the prune chose the database) has its
// documents left alone, which the old database may no longer record:
// ErrMovedDuringPrune.
func TestPruneDocumentsOfATenantMovedMeanwhileRemovesNothing(t *testing.T) {
	t.Parallel()
	f := setupPrune(t, 1)
	f.deleteInvoices(t)
	if _, err := f.catalog.AddDatabase(f.ctx, "eu2", ""); err != nil {
		t.Fatal(err)
	}
	place := func(ctx context.Context, db string) error {
		_, err := f.pool.Exec(ctx, "UPDATE tenancy.tenants SET database = $1 WHERE id = $2", db, f.tn.ID)
		return err
	}
	moving := &movingCatalog{Postgres: f.catalog, switchTo: func(ctx context.Context) error { return place(ctx, "eu2") }}
	svc := tenancy.New(tenancy.Config{Catalog: moving, Enqueuer: f.enqueuer, Documents: f.docs, SchemaPool: f.pool})
	res, err := svc.PruneDocuments(f.ctx, f.tn.ID)
	if !errors.Is(err, tenancy.ErrMovedDuringPrune) || res.Removed != 0 {
		t.Fatalf("PruneDocuments of a tenant moved meanwhile = %+v, %v; want ErrMovedDuringPrune, nothing removed", res, err)
	}
	if !f.stored(t, invoice.DocumentKey(f.ids[0])) {
		t.Fatal("a document was removed after the tenant moved")
	}
	// Not moved: the deleted invoice's PDF goes.
	if err := place(f.ctx, tenantctx.DefaultDatabase); err != nil {
		t.Fatal(err)
	}
	if res, err := f.svc.PruneDocuments(f.ctx, f.tn.ID); err != nil || res.Removed != 1 {
		t.Fatalf("PruneDocuments = %+v, %v; want 1 removed", res, err)
	}
}

// TestPruneDocumentsOfATenantDeletedMeanwhile: a tenant whose deletion is
// requested and whose schema its destroy drops while the prune checks its
// documents (the prune read it active, then waited for the writers' lock
// of invoice_documents, which the drop holds) is skipped as being
// deleted, not an error: PruneAllDocuments would otherwise stop there and
// leave every tenant after it unpruned.
func TestPruneDocumentsOfATenantDeletedMeanwhile(t *testing.T) {
	t.Parallel()
	f := setupPrune(t, 1)
	table := pgx.Identifier{f.tn.Schema, "invoice_documents"}.Sanitize()

	// The destroy's drop, held open until the prune waits for it.
	drop, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = drop.Rollback(context.WithoutCancel(f.ctx)) }()
	if _, err := drop.Exec(f.ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	type result struct {
		res tenancy.DocumentsPruned
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := f.svc.PruneDocuments(f.ctx, f.tn.ID)
		done <- result{res, err}
	}()
	for waiting := 0; waiting == 0; {
		select {
		case r := <-done:
			t.Fatalf("PruneDocuments did not wait for the drop: %+v, %v", r.res, r.err)
		case <-time.After(20 * time.Millisecond):
		}
		if err := f.pool.QueryRow(f.ctx, "SELECT count(*) FROM pg_catalog.pg_locks WHERE NOT granted AND relation = $1::regclass",
			table).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.RequestDeletion(f.ctx, f.tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := drop.Exec(f.ctx, "DROP SCHEMA "+pgx.Identifier{f.tn.Schema}.Sanitize()+" CASCADE"); err != nil {
		t.Fatal(err)
	}
	if err := drop.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}

	r := <-done
	if r.err != nil || r.res.Skipped != "being deleted" || r.res.Removed != 0 {
		t.Fatalf("PruneDocuments of a tenant deleted meanwhile = %+v, %v; want it skipped as being deleted", r.res, r.err)
	}
}

// TestPruneDocumentsOnARepeatableReadDatabase: on a tenant database
// whose default_transaction_isolation is repeatable read or serializable
// (an operator's ALTER DATABASE), a prune still removes the document of a
// deleted invoice and keeps a recorded one: its unit of work runs at read
// committed, which its checks (each after the locks it took, with a
// snapshot of its own) are made for. It refused under such a default, and
// its documents:prune failed the same way at every retry until archived,
// every day, for as long as the default stayed.
func TestPruneDocumentsOnARepeatableReadDatabase(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(strings.ReplaceAll(level, " ", "_"), func(t *testing.T) {
			t.Parallel()
			f := setupPrune(t, 2)
			f.unit(t, func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, "DELETE FROM invoices WHERE id = $1", f.ids[0])
				return err
			})
			setDatabaseDefault(t, f.ctx, f.pool, "default_transaction_isolation", level)
			f.pool.Reset() // new connections take the setting
			res, err := f.svc.PruneDocuments(f.ctx, f.tn.ID)
			if err != nil || res.Removed != 1 || res.Checked != 2 {
				t.Fatalf("PruneDocuments under %s = %+v, %v; want 2 checked, 1 removed", level, res, err)
			}
			if f.stored(t, invoice.DocumentKey(f.ids[0])) {
				t.Error("the document of the deleted invoice is still stored")
			}
			if !f.stored(t, invoice.DocumentKey(f.ids[1])) {
				t.Error("the document of a recorded invoice was removed")
			}
		})
	}
}
