package storage_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/invoicing/tenantworker/storage"
)

// TestFSDeleteTenantOfAnUnmountedStoreFails: DOCUMENTS_DIR on a volume
// (here a bind mount) that is unmounted while the process runs is a
// missing root for a store the process made (NewFS). DeleteTenant, the
// documents' step of a tenant's erasure, must fail then, and be retried:
// it returned nil, as for a store that never existed (OpenFS), so the
// erasure went on to delete the catalog row, after which nothing removes
// the tenant's documents, found whole once the volume is mounted again.
func TestFSDeleteTenantOfAnUnmountedStoreFails(t *testing.T) {
	t.Parallel()
	vol, mnt := t.TempDir(), t.TempDir()
	if err := syscall.Mount(vol, mnt, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("cannot bind-mount a volume for the store (the test needs root or CAP_SYS_ADMIN): %v", err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	store, err := storage.NewFS(filepath.Join(mnt, "documents"))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(withoutOpenat2Env) != "" {
		store = store.WithoutOpenat2()
	}
	mustPut(t, store, "tn_a", "invoices/1.pdf", []byte("a1"))
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmount the store's volume: %v", err)
	}
	mounted = false

	err = store.DeleteTenant(testContext(t), "tn_a")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DeleteTenant with the store's volume unmounted: %v, want an error wrapping fs.ErrNotExist", err)
	}
	if err := syscall.Mount(vol, mnt, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount the volume again: %v", err)
	}
	mounted = true
	if got, _, err := readDoc(t, store, "tn_a", "invoices/1.pdf"); err != nil || string(got) != "a1" {
		t.Fatalf("the tenant's document once the volume is back: %q, %v; want it there, as the failed deletion left it", got, err)
	}
	if err := store.DeleteTenant(testContext(t), "tn_a"); err != nil {
		t.Fatalf("DeleteTenant once the volume is back: %v", err)
	}
	if _, _, err := readDoc(t, store, "tn_a", "invoices/1.pdf"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the tenant's document after its deletion: %v, want ErrNotFound", err)
	}
}

// TestFSListDocumentsOfAnUnmountedStoreFails: a documents:prune lists
// each tenant's documents (ListDocuments); with DOCUMENTS_DIR on a volume
// unmounted while the worker runs, the store NewFS made has lost its
// root. The listing must fail, so the prune reports the fault: it found
// no document, and every tenant's prune reported "checked 0" as for a
// tenant that has none. A tenant without documents in a store whose root
// is there is still an empty list.
func TestFSListDocumentsOfAnUnmountedStoreFails(t *testing.T) {
	t.Parallel()
	vol, mnt := t.TempDir(), t.TempDir()
	if err := syscall.Mount(vol, mnt, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("cannot bind-mount a volume for the store (the test needs root or CAP_SYS_ADMIN): %v", err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	store, err := storage.NewFS(filepath.Join(mnt, "documents"))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(withoutOpenat2Env) != "" {
		store = store.WithoutOpenat2()
	}
	mustPut(t, store, "tn_a", "invoices/1.pdf", []byte("a1"))
	if keys, err := store.ListDocuments(testContext(t), "tn_b", "invoices"); err != nil || len(keys) != 0 {
		t.Fatalf("ListDocuments of a tenant without documents: %q, %v; want none, no error", keys, err)
	}
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmount the store's volume: %v", err)
	}
	mounted = false

	keys, err := store.ListDocuments(testContext(t), "tn_a", "invoices")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ListDocuments with the store's volume unmounted: %q, %v; want an error wrapping fs.ErrNotExist", keys, err)
	}
}
