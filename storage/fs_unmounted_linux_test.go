package storage_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

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
	store, v := storeOnAVolume(t)
	mustPut(t, store, "tn_a", "invoices/1.pdf", []byte("a1"))
	v.unmount(t)

	err := store.DeleteTenant(testContext(t), "tn_a")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DeleteTenant with the store's volume unmounted: %v, want an error wrapping fs.ErrNotExist", err)
	}
	v.remount(t)
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
	store, v := storeOnAVolume(t)
	mustPut(t, store, "tn_a", "invoices/1.pdf", []byte("a1"))
	if keys, err := store.ListDocuments(testContext(t), "tn_b", "invoices"); err != nil || len(keys) != 0 {
		t.Fatalf("ListDocuments of a tenant without documents: %q, %v; want none, no error", keys, err)
	}
	v.unmount(t)

	keys, err := store.ListDocuments(testContext(t), "tn_a", "invoices")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ListDocuments with the store's volume unmounted: %q, %v; want an error wrapping fs.ErrNotExist", keys, err)
	}
}

// volume is a directory bind-mounted on another, standing for the volume
// DOCUMENTS_DIR is on, which an operator may unmount while the process
// runs.
type volume struct {
	dir, mnt string
	mounted  bool
}

// storeOnAVolume bind-mounts a fresh directory (a volume) and returns a
// store that NewFS made in it, as a process does at its start, and the
// volume, unmounted when the test ends.
func storeOnAVolume(t *testing.T) (*storage.FS, *volume) {
	t.Helper()
	v := &volume{dir: t.TempDir(), mnt: t.TempDir()}
	if err := syscall.Mount(v.dir, v.mnt, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("cannot bind-mount a volume for the store (the test needs root or CAP_SYS_ADMIN): %v", err)
	}
	v.mounted = true
	t.Cleanup(func() {
		if v.mounted {
			_ = syscall.Unmount(v.mnt, syscall.MNT_DETACH)
		}
	})
	store, err := storage.NewFS(filepath.Join(v.mnt, "documents"))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(withoutOpenat2Env) != "" {
		store = store.WithoutOpenat2()
	}
	return store, v
}

// unmount unmounts the volume: the store's root is gone. The kernel
// refuses (EBUSY) while any process holds a file or directory of the
// volume open, which a child another parallel test forks does for the
// moment between its fork and its exec (Go's descriptors are closed at
// exec, not at fork): it tries again for up to 10 s.
func (v *volume) unmount(t *testing.T) {
	t.Helper()
	var err error
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err = syscall.Unmount(v.mnt, 0); !errors.Is(err, syscall.EBUSY) || time.Now().After(end) {
			break
		}
	}
	if err != nil {
		t.Fatalf("unmount the store's volume: %v", err)
	}
	v.mounted = false
}

// remount mounts the volume again, with what it held.
func (v *volume) remount(t *testing.T) {
	t.Helper()
	if err := syscall.Mount(v.dir, v.mnt, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount the volume again: %v", err)
	}
	v.mounted = true
}
