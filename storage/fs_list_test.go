package storage_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestFSListDocuments: ListDocuments lists the documents directly in a
// tenant's directory, sorted, without its subdirectories or another
// tenant's documents; a tenant or directory without documents is an empty
// list; a symbolic link on the way (to another tenant's directory) is
// refused, not followed; invalid tenants and directories are refused.
func TestFSListDocuments(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	ctx := testContext(t)
	for _, k := range []string{"invoices/2.pdf", "invoices/10.pdf", "invoices/sub/3.pdf", "other/1.pdf"} {
		mustPut(t, b.store, "tn_a", k, []byte(k))
	}
	mustPut(t, b.store, "tn_b", "invoices/7.pdf", []byte("B's"))

	got, err := b.store.ListDocuments(ctx, "tn_a", "invoices")
	if want := []string{"invoices/10.pdf", "invoices/2.pdf"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("ListDocuments(tn_a, invoices) = %q, %v; want %q", got, err, want)
	}
	for _, c := range []struct{ tenant, dir string }{{"tn_c", "invoices"}, {"tn_a", "none"}} {
		if got, err := b.store.ListDocuments(ctx, c.tenant, c.dir); err != nil || len(got) != 0 {
			t.Errorf("ListDocuments(%s, %s) = %q, %v; want nothing", c.tenant, c.dir, got, err)
		}
	}

	link := filepath.Join(b.store.Root(), "tn_c")
	if err := os.Symlink("tn_b", link); err != nil {
		t.Fatal(err)
	}
	if got, err := b.store.ListDocuments(ctx, "tn_c", "invoices"); err == nil {
		t.Errorf("ListDocuments through a link to another tenant = %q, want an error", got)
	}

	for _, c := range []struct{ tenant, dir string }{{"../tn_a", "invoices"}, {"tn_a", "../tn_b/invoices"}, {"tn_a", ""}} {
		if _, err := b.store.ListDocuments(ctx, c.tenant, c.dir); err == nil {
			t.Errorf("ListDocuments(%q, %q) accepted", c.tenant, c.dir)
		} else if c.dir != "" && c.tenant == "tn_a" && !errors.Is(err, storage.ErrInvalidDocumentKey) {
			t.Errorf("ListDocuments(%q, %q) = %v, want ErrInvalidDocumentKey", c.tenant, c.dir, err)
		}
	}
	// An id that is not a tenant's is refused before any path is made of
	// it: "" or "." joined with another tenant's directory would name it.
	for _, tenant := range []string{"", ".", "A", "-a"} {
		if got, err := b.store.ListDocuments(ctx, tenant, "tn_b/invoices"); !errors.Is(err, tenantctx.ErrInvalidID) {
			t.Errorf("ListDocuments(%q, tn_b/invoices) = %q, %v; want ErrInvalidID", tenant, got, err)
		}
	}
}
