package tenancy_test

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
)

// TestPruneDocumentsOnOneConnectionSharedWithTheCatalog: a tenant on
// "main" is pruned when the catalog and the tenants' units of work share a
// pool whose every connection a prune holds (DB_MAX_CONNS=1; or as many
// documents:prune tasks at once as the pool has connections): the
// placement check under the writers' lock reads the catalog through the
// unit's own transaction, instead of waiting out the batch's bound for a
// second connection that never comes.
func TestPruneDocumentsOnOneConnectionSharedWithTheCatalog(t *testing.T) {
	t.Parallel()
	f := setupPrune(t, 3)
	f.deleteInvoices(t)
	one, err := schema.NewPool(f.ctx, f.pool.Config().ConnString(), schema.PoolOptions{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(one.Close)
	svc := tenancy.New(tenancy.Config{Catalog: storage.NewPostgres(one), Enqueuer: f.enqueuer, Documents: f.docs,
		DocumentDirs: []string{invoice.DocumentDir}, SchemaPool: one})
	ctx, cancel := context.WithTimeout(f.ctx, 20*time.Second)
	defer cancel()
	res, err := svc.PruneDocuments(ctx, f.tn.ID)
	if err != nil || res.Checked != 3 || res.Removed != 3 {
		t.Fatalf("PruneDocuments on one connection = %+v, %v; want the 3 documents of the deleted invoices removed", res, err)
	}
	for _, id := range f.ids {
		if f.stored(t, invoice.DocumentKey(id)) {
			t.Errorf("the PDF of deleted invoice %d is still stored", id)
		}
	}
}
