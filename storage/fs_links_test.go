package storage_test

import (
	"bytes"
	"os"
	"os/exec"
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
			if err := b.store.PrepareTenant(testContext(t), "tn_a", "invoices/2027"); err == nil && l.name != "document" {
				t.Error("tenant a's PrepareTenant through the link succeeded")
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

// withoutOpenat2Env, set, makes setupFS's stores work as on a kernel
// without openat2(2) (storage.FS.WithoutOpenat2).
const withoutOpenat2Env = "STORAGE_TEST_WITHOUT_OPENAT2"

// TestFSWithoutOpenat2 runs the document store's tests again, in a child
// process of this test binary, on stores that work as on a kernel without
// openat2(2): they check each path for symbolic links before its operation,
// and must keep every behaviour. Only TestFSSymlinkSwapCannotCrossTenants
// is left out: a directory swapped for a link between the check and the
// operation is the window that only openat2 closes.
func TestFSWithoutOpenat2(t *testing.T) {
	t.Parallel()
	if os.Getenv(withoutOpenat2Env) != "" {
		return // the child's run of this test
	}
	cmd := exec.CommandContext(testContext(t), os.Args[0], "-test.run=^TestFS", "-test.skip=^(TestFSSymlinkSwapCannotCrossTenants|TestFSWithoutOpenat2)$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), withoutOpenat2Env+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the store's tests without openat2: %v\n%s", err, out.String())
	}
	for _, name := range []string{"TestFSOpenAt2", "TestFSSymlinkCannotCrossTenants", "TestFSRoundTripAndReplace", "TestFSDelete", "TestFSPrepareTenant", "TestFSOpenOfAFIFOIsNotFound"} {
		if !strings.Contains(out.String(), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass without openat2:\n%s", name, out.String())
		}
	}
}
