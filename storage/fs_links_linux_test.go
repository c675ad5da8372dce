package storage_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/invoicing/tenantworker/storage"
)

// TestFSSymlinkSwapCannotCrossTenants: a directory on a tenant's document
// paths (its key directory, or the tenant's directory itself) swapped for
// a link to another tenant's directory and back, again and again, while
// the tenant's documents are written and read, never makes an Open return,
// or a Put write, the other tenant's documents, not even when a swap lands
// between the check of a path and the operation on it (a hook waits there
// for the next swap): the store resolves a document's directory once,
// following no link, and works relative to what it opened.
func TestFSSymlinkSwapCannotCrossTenants(t *testing.T) {
	// Not parallel: the hook is the package's.
	for _, tt := range []struct{ name, dir, target string }{
		{"key directory", "tn_a/invoices", "../tn_b/invoices"},
		{"tenant directory", "tn_a", "tn_b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := setupFS(t)
			if !b.store.OpenAt2() {
				t.Fatal("the store does not use openat2(2) (Linux 5.6 or later, not refused by a seccomp filter): a swap between its check of a path and the operation can cross tenants")
			}
			const docs, opens, puts, tries = 8, 2000, 100, 10000
			key := func(i int) string { return fmt.Sprintf("invoices/%d.pdf", i%docs) }
			for i := range docs {
				mustPut(t, b.store, "tn_a", key(i), []byte("A's "+key(i)))
				mustPut(t, b.store, "tn_b", key(i), []byte("B's "+key(i)))
			}
			tenantB := filepath.Join(b.store.Root(), "tn_b")
			before := contents(t, tenantB)

			// The swapper exchanges the directory and a link to tn_b's
			// (renameat2 RENAME_EXCHANGE: the name is always one or the
			// other) each time an operation has ended or reached the hook,
			// which waits for that swap: a swap lands in the window of
			// every operation that reaches it, and the operations
			// resolve their paths in either state.
			dir := filepath.Join(b.store.Root(), filepath.FromSlash(tt.dir))
			link := dir + ".link"
			if err := os.Symlink(filepath.FromSlash(tt.target), link); err != nil {
				t.Fatal(err)
			}
			var swaps, progress atomic.Int64
			var stop, stopped atomic.Bool
			var swapper sync.WaitGroup
			swapper.Go(func() {
				defer stopped.Store(true)
				var handled int64                         // progress the swaps so far answered
				for !stop.Load() || swaps.Load()%2 != 0 { // ends with the directory in place
					for progress.Load() == handled && !stop.Load() {
						runtime.Gosched()
					}
					handled = progress.Load()
					if err := unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, link, unix.RENAME_EXCHANGE); err != nil {
						t.Errorf("swap %s and %s: %v", dir, link, err)
						return
					}
					swaps.Add(1)
				}
			})
			storage.SetTestHookBeforeUse(t, func() {
				n := swaps.Load()
				progress.Add(1)
				for swaps.Load() == n && !stopped.Load() {
					runtime.Gosched()
				}
			})

			ctx := testContext(t)
			var readB, opened, put atomic.Int64
			var firstB atomic.Value
			var workers sync.WaitGroup
			workers.Go(func() {
				for i := 0; opened.Load() < opens && i < tries; i++ {
					got, _, err := readDoc(t, b.store, "tn_a", key(i))
					progress.Add(1)
					if err != nil {
						continue // refused: a link on the path
					}
					opened.Add(1)
					if !bytes.HasPrefix(got, []byte("A's ")) {
						readB.Add(1)
						firstB.CompareAndSwap(nil, fmt.Sprintf("%s: %q", key(i), got))
					}
				}
			})
			workers.Go(func() {
				for i := 0; put.Load() < puts && i < tries; i++ {
					_, err := b.store.Put(ctx, "tn_a", key(i), strings.NewReader(fmt.Sprintf("A's %s #%d", key(i), i)))
					progress.Add(1)
					if err == nil {
						put.Add(1)
					}
				}
			})
			workers.Wait()
			stop.Store(true)
			swapper.Wait()
			t.Logf("%d swaps; %d opens and %d puts of tenant a went through", swaps.Load(), opened.Load(), put.Load())

			if n := readB.Load(); n > 0 {
				t.Errorf("%d opens of tenant a's documents returned tenant b's, the first %s", n, firstB.Load())
			}
			if after := contents(t, tenantB); !slices.Equal(before, after) {
				t.Errorf("tenant a's puts wrote into tenant b's directory:\nbefore %q\nafter  %q", before, after)
			}
			if opened.Load() == 0 || put.Load() == 0 {
				t.Errorf("no open or no put of tenant a went through: the test proves nothing")
			}
		})
	}
}

// contents returns every path under dir (as files does) with the content
// of each file after it.
func contents(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, p := range files(t, dir) {
		out = append(out, p)
		if !strings.HasSuffix(p, "/") {
			b, err := os.ReadFile(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, "= "+string(b))
		}
	}
	return out
}

// TestFSOpenAt2: on Linux 5.6 and later the store resolves paths with
// openat2(2); the stores of TestFSWithoutOpenat2's run do not.
func TestFSOpenAt2(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	if want := os.Getenv(withoutOpenat2Env) == ""; b.store.OpenAt2() != want {
		t.Fatalf("OpenAt2() = %v, want %v (kernel without openat2, or a seccomp filter refusing it?)", b.store.OpenAt2(), want)
	}
}
