package storage_test

import (
	"errors"
	"slices"
	"syscall"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// TestFSCheckWritable: CheckWritable passes on a store it can write and
// leaves nothing behind, and fails with the system's reason on one it
// cannot (a read-only file system, as a volume mounted read-only).
func TestFSCheckWritable(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	mustPut(t, b.store, "tn_a", "invoices/1.pdf", []byte("a1"))
	before := files(t, b.parent)
	if err := b.store.CheckWritable(testContext(t)); err != nil {
		t.Fatalf("CheckWritable of a writable store: %v", err)
	}
	if after := files(t, b.parent); !slices.Equal(after, before) {
		t.Errorf("CheckWritable changed the tree:\nbefore %q\nafter  %q", before, after)
	}
	ro, err := storage.NewFS(testenv.ReadOnlyDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.CheckWritable(testContext(t)); !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EACCES) {
		t.Errorf("CheckWritable of a read-only store: %v, want EROFS or EACCES", err)
	}
}
