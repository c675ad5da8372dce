package enqueueapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDocumentsPruneCommand: "enqueue documents prune" removes the PDF of
// an invoice deleted since it was rendered, keeps the recorded one, prints
// one JSON line per tenant and the totals; --tenant limits it to one
// tenant, and an unknown one is an error.
func TestDocumentsPruneCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	tn := f.movable(t, "acme")
	var ids []int64
	pool, err := placement.PoolFor(ctx, f.deps.Pools, f.deps.Pool, tn)
	if err != nil {
		t.Fatal(err)
	}
	err = schema.InTenant(tenantctx.WithTenant(ctx, tn), pool, func(ctx context.Context, tx pgx.Tx) error {
		if ids, err = invoice.Create(ctx, tx,
			invoice.New{Number: "A-1", Customer: invoice.Customer{Name: "Zoë", Email: "z@acme.example"}},
			invoice.New{Number: "A-2", Customer: invoice.Customer{Name: "Ada", Email: "a@acme.example"}}); err != nil {
			return err
		}
		for _, id := range ids {
			info, err := f.deps.Documents.Put(ctx, tn.ID, invoice.DocumentKey(id), strings.NewReader("%PDF-1.4"))
			if err != nil {
				return err
			}
			if err := invoice.RecordDocument(ctx, tx, invoice.Document{InvoiceID: id, StorageKey: info.Key, SHA256: info.SHA256, Bytes: info.Bytes}); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, "DELETE FROM invoices WHERE id = $1", ids[1])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := f.run(t, false, "documents", "prune")
	if code != enqueueapp.ExitOK {
		t.Fatalf("documents prune: exit %d, stderr %q", code, stderr)
	}
	var got tenancy.DocumentsPruned
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("documents prune: stdout %q: %v", stdout, err)
	}
	if want := (tenancy.DocumentsPruned{TenantID: tn.ID, Slug: "acme", Checked: 2, Removed: 1}); got != want {
		t.Errorf("documents prune printed %+v, want %+v", got, want)
	}
	if !strings.Contains(stderr, "1 tenants: 2 invoice documents checked, 1 removed") {
		t.Errorf("documents prune: stderr %q, want the totals", stderr)
	}
	for i, id := range ids {
		rc, _, err := f.deps.Documents.Open(ctx, tn.ID, invoice.DocumentKey(id))
		if err == nil {
			_ = rc.Close()
		}
		if kept := err == nil; kept != (i == 0) {
			t.Errorf("invoice %d's PDF kept: %v (open: %v)", id, kept, err)
		}
	}

	code, stdout, _ = f.run(t, false, "documents", "prune", "--tenant", "acme")
	if code != enqueueapp.ExitOK || !strings.Contains(stdout, `"checked":1,"removed":0`) {
		t.Errorf("documents prune --tenant acme: exit %d, stdout %q", code, stdout)
	}
	if code, _, stderr := f.run(t, false, "documents", "prune", "--tenant", "nobody"); code != enqueueapp.ExitFailure || !strings.Contains(stderr, "nobody") {
		t.Errorf("documents prune --tenant nobody: exit %d, stderr %q; want exit 1 naming the tenant", code, stderr)
	}
	if code, _, _ := f.run(t, false, "documents"); code != enqueueapp.ExitUsage {
		t.Errorf("documents without prune: exit %d, want %d", code, enqueueapp.ExitUsage)
	}
}

// TestDocumentsPruneCommandGoesOnPastAFailedTenant: a tenant whose
// documents cannot be checked (its invoice_documents table gone) gets a
// line on stderr naming it; the other tenants are pruned all the same,
// and the command exits 1.
func TestDocumentsPruneCommandGoesOnPastAFailedTenant(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	gone := map[string]int64{}
	for _, slug := range []string{"acme", "broken"} {
		p, err := f.deps.Tenancy.Provision(ctx, tenancy.NewTenant{Slug: slug}, "test")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := schema.Migrate(ctx, f.deps.SchemaPool, p.Tenant.Schema, 0); err != nil {
			t.Fatal(err)
		}
		tn, err := f.deps.Catalog.SetStatus(ctx, p.Tenant.ID, tenantctx.StatusActive)
		if err != nil {
			t.Fatal(err)
		}
		pool, err := placement.PoolFor(ctx, f.deps.Pools, f.deps.Pool, tn)
		if err != nil {
			t.Fatal(err)
		}
		err = schema.InTenant(tenantctx.WithTenant(ctx, tn), pool, func(ctx context.Context, tx pgx.Tx) error {
			ids, err := invoice.Create(ctx, tx, invoice.New{Number: slug + "-1", Customer: invoice.Customer{Name: "Ada", Email: "a@" + slug + ".example"}})
			if err != nil {
				return err
			}
			if _, err := f.deps.Documents.Put(ctx, tn.ID, invoice.DocumentKey(ids[0]), strings.NewReader("%PDF-1.4")); err != nil {
				return err
			}
			gone[tn.ID] = ids[0]
			if _, err := tx.Exec(ctx, "DELETE FROM invoices"); err != nil {
				return err
			}
			if slug == "broken" {
				_, err = tx.Exec(ctx, "DROP TABLE invoice_documents")
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	broken, err := f.deps.Catalog.TenantBySlug(ctx, "broken")
	if err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := f.run(t, false, "documents", "prune")
	if code != enqueueapp.ExitFailure || !strings.Contains(stderr, "tenant "+broken.ID+": ") || !strings.Contains(stderr, "1 tenants failed") {
		t.Fatalf("documents prune with a broken tenant: exit %d, stderr %q; want exit 1 naming it", code, stderr)
	}
	if !strings.Contains(stdout, `"slug":"acme","checked":1,"removed":1`) || strings.Contains(stdout, `"slug":"broken"`) {
		t.Errorf("documents prune with a broken tenant: stdout %q, want acme's line only", stdout)
	}
	for id, inv := range gone {
		rc, _, err := f.deps.Documents.Open(ctx, id, invoice.DocumentKey(inv))
		if err == nil {
			_ = rc.Close()
		}
		if kept := err == nil; kept != (id == broken.ID) {
			t.Errorf("tenant %s: deleted invoice's PDF kept %v", id, kept)
		}
	}
}

// TestDocumentsPruneCommandGoesOnPastAnUnreachableDatabase: a tenant
// placed on a database this process cannot reach (registered without a
// URL, not in its TENANT_DATABASES) is a line on stderr naming it and its
// database's error, not skipped as erased; the command does not stop
// there: the other tenants are pruned all the same, and it exits 1 (as
// docs/operations.md says under "Deleting an invoice").
func TestDocumentsPruneCommandGoesOnPastAnUnreachableDatabase(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.deps.Catalog.AddDatabase(ctx, "eu9", ""); err != nil {
		t.Fatal(err)
	}
	far, err := tenantctx.New("faraway", "Far away", "free")
	if err != nil {
		t.Fatal(err)
	}
	far.Status, far.Database = tenantctx.StatusActive, "eu9"
	if _, err := f.deps.Catalog.CreateTenant(ctx, far); err != nil {
		t.Fatal(err)
	}
	if _, err := f.deps.Documents.Put(ctx, far.ID, invoice.DocumentKey(1), strings.NewReader("%PDF-1.4")); err != nil {
		t.Fatal(err)
	}
	tn := f.movable(t, "acme")
	pool, err := placement.PoolFor(ctx, f.deps.Pools, f.deps.Pool, tn)
	if err != nil {
		t.Fatal(err)
	}
	var gone int64
	err = schema.InTenant(tenantctx.WithTenant(ctx, tn), pool, func(ctx context.Context, tx pgx.Tx) error {
		ids, err := invoice.Create(ctx, tx, invoice.New{Number: "A-1", Customer: invoice.Customer{Name: "Ada", Email: "a@acme.example"}})
		if err != nil {
			return err
		}
		if _, err := f.deps.Documents.Put(ctx, tn.ID, invoice.DocumentKey(ids[0]), strings.NewReader("%PDF-1.4")); err != nil {
			return err
		}
		gone = ids[0]
		_, err = tx.Exec(ctx, "DELETE FROM invoices")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := f.run(t, false, "documents", "prune")
	if code != enqueueapp.ExitFailure || !strings.Contains(stderr, "tenant "+far.ID+": ") || !strings.Contains(stderr, "eu9") ||
		!strings.Contains(stderr, "1 tenants failed") {
		t.Fatalf("documents prune with a tenant on an unreachable database: exit %d, stderr %q; want exit 1 naming it", code, stderr)
	}
	if !strings.Contains(stdout, `"slug":"acme","checked":1,"removed":1`) {
		t.Errorf("documents prune with a tenant on an unreachable database: stdout %q, want acme pruned all the same", stdout)
	}
	if rc, _, err := f.deps.Documents.Open(ctx, tn.ID, invoice.DocumentKey(gone)); err == nil {
		_ = rc.Close()
		t.Errorf("acme's deleted invoice's PDF kept")
	}
	rc, _, err := f.deps.Documents.Open(ctx, far.ID, invoice.DocumentKey(1))
	if err != nil {
		t.Fatalf("the unreachable tenant's document: %v; want it kept", err)
	}
	_ = rc.Close()
}

// TestDocumentsPruneRefusesAMissingDirectory: a prune pointed at a
// documents directory that does not exist (DOCUMENTS_DIR unset, so
// ./data/documents, or mistyped) fails and says so, instead of creating it
// empty and reporting that nothing was left to remove.
func TestDocumentsPruneRefusesAMissingDirectory(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.movable(t, "acme")
	missing := filepath.Join(t.TempDir(), "documents")
	f.env["DOCUMENTS_DIR"] = missing
	code, stdout, stderr := f.run(t, false, "documents", "prune")
	if code == enqueueapp.ExitOK || stdout != "" {
		t.Errorf("documents prune of a missing directory: exit %d, stdout %q; want a failure and nothing printed", code, stdout)
	}
	if !strings.Contains(stderr, missing+" (DOCUMENTS_DIR) does not exist") {
		t.Errorf("documents prune of a missing directory: stderr %q, want it named", stderr)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("documents prune made the missing directory (stat: %v)", err)
	}
}

// TestCommandsLeaveAMissingDocumentsDirectoryMissing: a one-shot command
// that writes no documents (`enqueue queues`, `db list`, `tenant add`) run
// where DOCUMENTS_DIR does not exist (unset, so ./data/documents, in the
// operator's working directory) does not create it, so no empty directory
// is left behind and a later `documents prune` there still fails and says
// so instead of reporting that it found nothing to remove.
func TestCommandsLeaveAMissingDocumentsDirectoryMissing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.movable(t, "acme")
	missing := filepath.Join(t.TempDir(), "data", "documents")
	f.env["DOCUMENTS_DIR"] = missing
	for _, args := range [][]string{{"queues"}, {"db", "list"}, {"tenant", "add", "globex"}} {
		if code, _, stderr := f.run(t, false, args...); code != enqueueapp.ExitOK {
			t.Fatalf("enqueue %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
		}
		if _, err := os.Stat(filepath.Dir(missing)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("enqueue %s made the documents directory %s (stat: %v)", strings.Join(args, " "), missing, err)
		}
	}
	code, stdout, stderr := f.run(t, false, "documents", "prune")
	if code == enqueueapp.ExitOK || !strings.Contains(stderr, missing+" (DOCUMENTS_DIR) does not exist") {
		t.Errorf("documents prune after other commands: exit %d, stdout %q, stderr %q; want it to refuse the missing directory", code, stdout, stderr)
	}
}
