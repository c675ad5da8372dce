package storage_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFSSymlinkCannotCrossTenants: a symbolic link planted in the store
// (a tenant's directory, a key's directory or a document made a link to
// another tenant's) stays inside the root, which os.Root allows, but it
// must not lead a tenant's Open, Put or Delete to another tenant's
// documents: keys are confined to their tenant (DocumentStore).
func TestFSSymlinkCannotCrossTenants(t *testing.T) {
	t.Parallel()
	links := []struct {
		name, link, target string
	}{
		{"tenant directory", "tn_a", "tn_b"},
		{"key directory", "tn_a/invoices", "../tn_b/invoices"},
		{"document", "tn_a/invoices/1.pdf", "../../tn_b/invoices/1.pdf"},
	}
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			b := setupFS(t)
			mustPut(t, b.store, "tn_b", "invoices/1.pdf", []byte("B's invoice"))
			mustPut(t, b.store, "tn_b", "invoices/2.pdf", []byte("B's second invoice"))
			mustPut(t, b.store, "tn_a", "other/0.pdf", []byte("A's")) // tn_a exists
			link := filepath.Join(b.store.Root(), filepath.FromSlash(l.link))
			if err := os.MkdirAll(filepath.Dir(link), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(link); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.FromSlash(l.target), link); err != nil {
				t.Fatal(err)
			}
			if got, _, err := readDoc(t, b.store, "tn_a", "invoices/1.pdf"); err == nil {
				t.Errorf("tenant a's Open read tenant b's document: %q", got)
			}
			// A link in the document's place is replaced itself (renameat):
			// only a link to a directory must make Put fail.
			if _, err := b.store.Put(testContext(t), "tn_a", "invoices/1.pdf", strings.NewReader("A's invoice")); err == nil && l.name != "document" {
				t.Error("tenant a's Put through the link succeeded")
			}
			if err := b.store.Delete(testContext(t), "tn_a", "invoices/2.pdf"); err == nil && l.name != "document" {
				t.Error("tenant a's Delete through the link succeeded")
			}
			got, _, err := readDoc(t, b.store, "tn_b", "invoices/1.pdf")
			if err != nil || string(got) != "B's invoice" {
				t.Errorf("tenant b's document 1 is now %q, %v", got, err)
			}
			if got, _, err := readDoc(t, b.store, "tn_b", "invoices/2.pdf"); err != nil || string(got) != "B's second invoice" {
				t.Errorf("tenant b's document 2 is now %q, %v", got, err)
			}
			if got := files(t, filepath.Join(b.store.Root(), "tn_b")); !slices.Equal(got, []string{"./", ".tmp~/", "invoices/", "invoices/1.pdf", "invoices/2.pdf"}) {
				t.Errorf("tenant b's directory holds %q", got)
			}
		})
	}
}
