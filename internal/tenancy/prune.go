package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// DocumentsPruned is what PruneDocuments did for one tenant.
type DocumentsPruned struct {
	TenantID string `json:"tenant_id"`
	Slug     string `json:"slug"`
	// Checked counts the invoice PDFs in the document store.
	Checked int `json:"checked"`
	// Removed counts those removed: no invoice_documents row recorded them.
	Removed int `json:"removed"`
	// Busy counts those left because their invoice was being rendered:
	// the render records its document, or removes it.
	Busy int `json:"busy"`
	// Skipped says why the tenant was not pruned ("" when it was).
	Skipped string `json:"skipped,omitempty"`
}

// ErrMovedDuringPrune is PruneDocuments' error when the tenant was moved
// to another database while its documents were checked: the documents
// checked against the old database are left alone. Pruning again checks
// them against the new one.
var ErrMovedDuringPrune = errors.New("tenant moved to another database during the prune: run it again")

// pruneBatch is how many documents one unit of work checks: its locks
// (one per invoice) are held until it commits, each an entry of the
// server's shared lock table (max_locks_per_transaction times the
// connections), which a few hundred at once could fill for other
// transactions on a small server.
const pruneBatch = 100

// pruneBatchTimeout bounds one batch's unit of work, its wait for the
// writers' lock included (a move's copy holds it until the old schema is
// dropped): past it the tenant's prune fails, and the next one takes it
// again.
const pruneBatchTimeout = 2 * time.Minute

// documentLister is a document store that can list a tenant's documents
// and delete one (storage.FS).
type documentLister interface {
	ListDocuments(ctx context.Context, tenantID, dir string) ([]string, error)
	Delete(ctx context.Context, tenantID, key string) error
}

// fresh returns the catalog reads that must see the latest committed
// row: the one the cache is in front of, when the catalog is a cache.
func (s *Service) fresh() storage.TenantStore {
	if c, ok := s.catalog.(interface{ Uncached() storage.Catalog }); ok {
		return c.Uncached()
	}
	return s.catalog
}

// PruneDocuments removes from the document store the PDFs of tenant id's
// invoices that no invoice_documents row records: the invoice was deleted
// after its PDF was rendered (the row goes with the invoice, ON DELETE
// CASCADE, and the file stayed), or a render stopped (a killed worker)
// between writing its file and committing its row, and the invoice was
// deleted before a retry. Such a file is never served (GET
// /v1/invoices/{id}/pdf and reminders go through the row) but holds the
// deleted invoice's customer data.
//
// Each batch of documents is checked in one unit of work on the tenant's
// database, at read committed whatever the database's
// default_transaction_isolation (schema.InTenantReadCommitted: each check
// needs a snapshot taken after the locks before it): it takes the writers' lock of invoice_documents (which waits
// for a move's copy and holds off the next), reads the tenant's placement
// from the catalog again (placementNow: through the unit's own
// transaction for a tenant on the catalog's database; a move switches only
// after its copy, so a placement still naming this database stays so until
// the unit ends;
// otherwise ErrMovedDuringPrune), tries each invoice's render lock (a
// render holds it from before its load until its row commits; an invoice
// being rendered is left: Busy), then, in a statement of its own, finds
// the documents with no row and removes them. So a document a render is
// writing, or has recorded, is never removed. Keys other than the ones
// renders write ("invoices/<id>.pdf") are left alone.
//
// A tenant being provisioned or deleted is skipped (Skipped says why): the
// first has no document yet, and the destroy of the second removes them
// all. So is a tenant whose deletion was requested while its documents
// were checked, when a batch then fails (its destroy dropped the schema):
// Skipped "being deleted", with what was done before; one erased
// meanwhile is an error wrapping storage.ErrNotFound, which
// PruneAllDocuments skips; a batch that waited for a move's copy until the
// old schema was dropped fails with ErrMovedDuringPrune (pruneFailed).
func (s *Service) PruneDocuments(ctx context.Context, id string) (DocumentsPruned, error) {
	res := DocumentsPruned{TenantID: id}
	files, ok := s.documents.(documentLister)
	if !ok {
		return res, errors.New("prune documents: the document store cannot list its documents")
	}
	t, err := s.fresh().TenantByID(ctx, id)
	if err != nil {
		return res, fmt.Errorf("prune documents of tenant %s: %w", id, err)
	}
	res.Slug = t.Slug
	switch t.Status {
	case tenantctx.StatusProvisioning:
		res.Skipped = "provisioning"
		return res, nil
	case tenantctx.StatusDeleting:
		res.Skipped = "being deleted"
		return res, nil
	}
	keys, err := files.ListDocuments(ctx, t.ID, invoice.DocumentDir)
	if err != nil {
		return res, fmt.Errorf("prune documents of tenant %s: %w", t.ID, err)
	}
	ids := make([]int64, 0, len(keys))
	for _, k := range keys {
		if n, ok := invoice.DocumentKeyID(k); ok {
			ids = append(ids, n)
		}
	}
	res.Checked = len(ids)
	if len(ids) == 0 {
		return res, nil
	}
	pool, err := placement.PoolFor(ctx, s.pools, s.pool, t)
	if err != nil {
		return res, fmt.Errorf("prune documents of tenant %s: %w", t.ID, err)
	}
	tctx := tenantctx.WithTenant(ctx, t)
	for len(ids) > 0 {
		batch := ids[:min(pruneBatch, len(ids))]
		ids = ids[len(batch):]
		bctx, cancel := context.WithTimeout(tctx, pruneBatchTimeout)
		err := schema.InTenantReadCommitted(bctx, pool, func(ctx context.Context, tx pgx.Tx) error {
			locked, err := invoice.LockDocuments(ctx, tx, t.Schema, batch)
			if err != nil {
				return err
			}
			now, err := s.placementNow(ctx, tx, t)
			if err != nil {
				return fmt.Errorf("read its placement again: %w", err)
			}
			if !samePlacement(now, t) {
				return ErrMovedDuringPrune
			}
			gone, err := invoice.Unreferenced(ctx, tx, locked)
			if err != nil {
				return err
			}
			res.Busy += len(batch) - len(locked)
			for _, n := range gone {
				if err := files.Delete(ctx, t.ID, invoice.DocumentKey(n)); err != nil {
					return err
				}
				res.Removed++
			}
			return nil
		})
		cancel()
		if err != nil {
			return s.pruneFailed(ctx, t, res, err)
		}
	}
	if res.Removed > 0 {
		s.logger.InfoContext(ctx, "removed the documents of deleted invoices", slog.String("tenant_id", t.ID),
			slog.Int("removed", res.Removed), slog.Int("checked", res.Checked))
	}
	return res, nil
}

// placementNow reads tenant t's row from the catalog again, from inside
// the unit of work tx on t's database. A tenant on "main", the catalog's
// own database, is read through tx: a second connection of the same pool
// may never come while concurrent prunes (one documents:prune task per
// tenant) hold them all, and each would wait out its batch's bound. A
// tenant elsewhere is read from the catalog's pool, uncached.
func (s *Service) placementNow(ctx context.Context, tx pgx.Tx, t tenantctx.Tenant) (tenantctx.Tenant, error) {
	if t.DatabaseName() == tenantctx.DefaultDatabase {
		return storage.TenantByIDIn(ctx, tx, t.ID)
	}
	return s.fresh().TenantByID(ctx, t.ID)
}

// pruneFailed returns what PruneDocuments returns when a batch of tenant
// t's documents failed with err. A batch waits for the writers' lock of
// invoice_documents, which a destroy's drop and a move's copy (until it
// drops the old schema) hold: the tenant is read again to tell a tenant
// whose deletion was requested meanwhile (skipped, "being deleted": its
// destroy removes its documents), erased meanwhile (an error wrapping
// storage.ErrNotFound) or moved meanwhile (ErrMovedDuringPrune) from
// another failure.
func (s *Service) pruneFailed(ctx context.Context, t tenantctx.Tenant, res DocumentsPruned, err error) (DocumentsPruned, error) {
	now, rerr := s.fresh().TenantByID(ctx, t.ID)
	switch {
	case errors.Is(rerr, storage.ErrNotFound):
		return res, fmt.Errorf("prune documents of tenant %s: deleted meanwhile: %w", t.ID, rerr)
	case rerr != nil:
		// No answer: err as it is.
	case now.Status == tenantctx.StatusDeleting:
		res.Skipped = "being deleted"
		return res, nil
	case !errors.Is(err, ErrMovedDuringPrune) && !samePlacement(now, t):
		err = fmt.Errorf("%w (%w)", ErrMovedDuringPrune, err)
	}
	return res, fmt.Errorf("prune documents of tenant %s: %w", t.ID, err)
}

// samePlacement reports whether a and b place the tenant in the same
// schema of the same generation of the same database: a move changes one.
func samePlacement(a, b tenantctx.Tenant) bool {
	return a.DatabaseName() == b.DatabaseName() && a.DatabaseGeneration == b.DatabaseGeneration && a.Schema == b.Schema
}

// PruneAllDocuments runs PruneDocuments for every tenant, page by page,
// one tenant at a time, and calls each with what it did, or with its error
// (which names the tenant); a tenant erased since its page was read is
// skipped, while one placed on a database this process cannot reach is
// reported (placement.ErrUnknownDatabase). It stops when each returns an
// error, and returns that error; a failure to list the tenants is its own
// error.
func (s *Service) PruneAllDocuments(ctx context.Context, each func(DocumentsPruned, error) error) error {
	opts := storage.ListOptions{Limit: storage.MaxPageSize}
	for {
		page, err := s.catalog.ListTenants(ctx, opts)
		if err != nil {
			return fmt.Errorf("prune documents: list tenants after %q: %w", opts.After, err)
		}
		for _, t := range page {
			res, err := s.PruneDocuments(ctx, t.ID)
			if errors.Is(err, storage.ErrNotFound) && !errors.Is(err, placement.ErrUnknownDatabase) {
				// Erased since the page was read: nothing left. Not a
				// tenant on a database this process cannot reach (that
				// error wraps storage.ErrNotFound too): it is reported.
				continue
			}
			if err := each(res, err); err != nil {
				return err
			}
		}
		if len(page) < opts.PageLimit() {
			return nil
		}
		opts.After = page[len(page)-1].ID
	}
}
