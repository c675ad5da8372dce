package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// fsBundle is a document store in a directory of its own, inside a parent
// directory that nothing else writes to (so escapes are visible).
type fsBundle struct {
	parent string
	store  *storage.FS
}

func setupFS(t *testing.T) fsBundle {
	t.Helper()
	parent := t.TempDir()
	store, err := storage.NewFS(filepath.Join(parent, "docs"))
	if err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	if os.Getenv(withoutOpenat2Env) != "" {
		store = store.WithoutOpenat2() // TestFSWithoutOpenat2's run
	}
	return fsBundle{parent: parent, store: store}
}

// files returns every path under dir, relative to it, directories marked
// with a trailing slash.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mustPut(t *testing.T, s *storage.FS, tenantID, key string, content []byte) storage.DocumentInfo {
	t.Helper()
	info, err := s.Put(testContext(t), tenantID, key, bytes.NewReader(content))
	if err != nil {
		t.Fatalf("Put(%s, %s): %v", tenantID, key, err)
	}
	return info
}

// readDoc opens a document and returns its content and info.
func readDoc(t *testing.T, s *storage.FS, tenantID, key string) ([]byte, storage.DocumentInfo, error) {
	t.Helper()
	rc, info, err := s.Open(testContext(t), tenantID, key)
	if err != nil {
		return nil, info, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s/%s: %v", tenantID, key, err)
	}
	return b, info, nil
}

func TestNewFSCreatesRoot(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "a", "b", "docs")
	s, err := storage.NewFS(root)
	if err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	st, err := os.Stat(root)
	if err != nil || !st.IsDir() {
		t.Fatalf("root %s not created: %v", root, err)
	}
	if perm := st.Mode().Perm(); perm&^0o750 != 0 {
		t.Errorf("root mode %v, want at most 0750", perm)
	}
	if s.Root() != root {
		t.Errorf("Root() = %s, want %s", s.Root(), root)
	}
	if _, err := storage.NewFS(""); err == nil {
		t.Error("NewFS(\"\") = nil error")
	}
}

// TestOpenFSLeavesAMissingRootMissing: OpenFS does not create its root;
// while the root is missing, writing and preparing fail with
// fs.ErrNotExist, reading finds nothing (storage.ErrNotFound), deleting a
// tenant's documents has none to delete, and nothing is created; once the root exists (a worker
// made it), the same store works.
func TestOpenFSLeavesAMissingRootMissing(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	root := filepath.Join(parent, "data", "documents")
	s, err := storage.OpenFS(root)
	if err != nil {
		t.Fatalf("OpenFS: %v", err)
	}
	if s.Root() != root {
		t.Errorf("Root() = %s, want %s", s.Root(), root)
	}
	ctx := context.Background()
	const tenant = "tn_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	if _, err := s.Put(ctx, tenant, "invoices/1.pdf", strings.NewReader("%PDF-1.4")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Put under a missing root: %v, want fs.ErrNotExist", err)
	}
	if _, _, err := s.Open(ctx, tenant, "invoices/1.pdf"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Open under a missing root: %v, want storage.ErrNotFound", err)
	}
	if err := s.PrepareTenant(ctx, tenant, "invoices"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("PrepareTenant under a missing root: %v, want fs.ErrNotExist", err)
	}
	if err := s.DeleteTenant(ctx, tenant); err != nil {
		t.Errorf("DeleteTenant under a missing root: %v, want none (no documents to delete)", err)
	}
	if _, err := s.ListDocuments(ctx, tenant, "invoices"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ListDocuments under a missing root: %v, want none or fs.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Dir(root)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the store made %s (stat: %v)", filepath.Dir(root), err)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, tenant, "invoices/1.pdf", strings.NewReader("%PDF-1.4")); err != nil {
		t.Errorf("Put once the root exists: %v", err)
	}
	if _, err := storage.OpenFS(""); err == nil {
		t.Error("OpenFS(\"\") = nil error")
	}
}

func TestFSRoundTripAndReplace(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	first := bytes.Repeat([]byte("%PDF-1.7 first\n"), 20000) // about 300 KB
	second := []byte("%PDF-1.7 second, shorter")

	for i, content := range [][]byte{first, second, {}} {
		info := mustPut(t, b.store, "tn_a", "invoices/42.pdf", content)
		want := storage.DocumentInfo{Key: "invoices/42.pdf", SHA256: sha(content), Bytes: int64(len(content))}
		if info != want {
			t.Errorf("Put #%d = %+v, want %+v", i, info, want)
		}
		got, openInfo, err := readDoc(t, b.store, "tn_a", "invoices/42.pdf")
		if err != nil {
			t.Fatalf("Open after Put #%d: %v", i, err)
		}
		if !bytes.Equal(got, content) {
			t.Errorf("Open after Put #%d: %d bytes, want %d", i, len(got), len(content))
		}
		if openInfo != want {
			t.Errorf("Open info after Put #%d = %+v, want %+v", i, openInfo, want)
		}
	}
	want := []string{"./", "tn_a/", "tn_a/.tmp~/", "tn_a/invoices/", "tn_a/invoices/42.pdf"}
	if got := files(t, b.store.Root()); !slices.Equal(got, want) {
		t.Errorf("store holds %q, want %q (no temporary files)", got, want)
	}
	st, err := os.Stat(filepath.Join(b.store.Root(), "tn_a", "invoices", "42.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("document mode %v, want at most 0640", perm)
	}
}

func TestFSOpenMissing(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	mustPut(t, b.store, "tn_a", "invoices/42.pdf", []byte("x"))
	for _, tt := range []struct{ tenant, key string }{
		{"tn_a", "invoices/43.pdf"},
		{"tn_b", "invoices/42.pdf"},
		{"tn_a", "invoices"},             // a directory, not a document
		{"tn_a", "invoices/42.pdf/x"},    // under a document
		{"tn_a", "invoices/.put~42.pdf"}, // not a key: a temporary name
	} {
		if _, _, err := readDoc(t, b.store, tt.tenant, tt.key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open(%s, %s) error = %v, want ErrNotFound", tt.tenant, tt.key, err)
		}
	}
}

func TestFSHostileKeys(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	mustPut(t, b.store, "tn_a", "ok.pdf", []byte("ok"))
	before := files(t, b.parent)
	for _, key := range []string{
		"", ".", "..", "../x", "../../etc/passwd", "/etc/passwd", "a/../../b", "a/../b",
		"a/./b", "a//b", "a/", "/a", "a\x00b", `a\b`, `..\x`, "a b", "a~b", "ä.pdf",
		"a\nb", strings.Repeat("a", 256), strings.Repeat("a/", 5<<10) + "a",
	} {
		_, err := b.store.Put(testContext(t), "tn_a", key, strings.NewReader("evil"))
		if !errors.Is(err, storage.ErrInvalidDocumentKey) {
			t.Errorf("Put(%.30q) error = %v, want ErrInvalidDocumentKey", key, err)
		}
		if _, _, err := readDoc(t, b.store, "tn_a", key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open(%.30q) error = %v, want ErrNotFound", key, err)
		}
		if err := b.store.PrepareTenant(testContext(t), "tn_new", "invoices", key); !errors.Is(err, storage.ErrInvalidDocumentKey) {
			t.Errorf("PrepareTenant(dir %.30q) error = %v, want ErrInvalidDocumentKey", key, err)
		}
	}
	if after := files(t, b.parent); !slices.Equal(after, before) {
		t.Errorf("hostile keys changed the tree:\nbefore %q\nafter  %q", before, after)
	}
}

func TestFSHostileTenantIDs(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	mustPut(t, b.store, "tn_a", "ok.pdf", []byte("ok"))
	before := files(t, b.parent)
	for _, id := range []string{
		"", ".", "..", "../x", "a/b", "/tmp", "A", "a\x00b", `a\b`, "-a",
		strings.Repeat("a", 10<<10),
	} {
		ctx := testContext(t)
		if _, err := b.store.Put(ctx, id, "x.pdf", strings.NewReader("evil")); !errors.Is(err, tenantctx.ErrInvalidID) {
			t.Errorf("Put(tenant %.30q) error = %v, want ErrInvalidID", id, err)
		}
		if _, _, err := readDoc(t, b.store, id, "ok.pdf"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open(tenant %.30q) error = %v, want ErrNotFound", id, err)
		}
		if err := b.store.DeleteTenant(ctx, id); !errors.Is(err, tenantctx.ErrInvalidID) {
			t.Errorf("DeleteTenant(%.30q) error = %v, want ErrInvalidID", id, err)
		}
		if err := b.store.PrepareTenant(ctx, id, "invoices"); !errors.Is(err, tenantctx.ErrInvalidID) {
			t.Errorf("PrepareTenant(%.30q) error = %v, want ErrInvalidID", id, err)
		}
	}
	if after := files(t, b.parent); !slices.Equal(after, before) {
		t.Errorf("hostile tenant ids changed the tree:\nbefore %q\nafter  %q", before, after)
	}
}

func TestFSSymlinkCannotEscape(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	outside := filepath.Join(b.parent, "outside")
	if err := os.Mkdir(outside, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret.pdf"), []byte("secret"), 0o640); err != nil {
		t.Fatal(err)
	}
	mustPut(t, b.store, "tn_a", "ok.pdf", []byte("ok"))
	if err := os.Symlink(outside, filepath.Join(b.store.Root(), "tn_a", "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Put(testContext(t), "tn_a", "link/new.pdf", strings.NewReader("evil")); err == nil {
		t.Error("Put through a symlink out of the store succeeded")
	}
	if got, _, err := readDoc(t, b.store, "tn_a", "link/secret.pdf"); err == nil {
		t.Errorf("Open through a symlink out of the store read %q", got)
	}
	if got := files(t, outside); !slices.Equal(got, []string{"./", "secret.pdf"}) {
		t.Errorf("outside directory now holds %q", got)
	}
}

func TestFSConcurrentPutSameKey(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	const writers = 10
	contents := make([][]byte, writers)
	for i := range contents {
		contents[i] = bytes.Repeat([]byte{byte('a' + i)}, 64<<10+i*1000)
	}
	infos := make([]storage.DocumentInfo, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			// A slow reader widens the window in which writers overlap.
			r := iotest.HalfReader(bytes.NewReader(contents[i]))
			infos[i], errs[i] = b.store.Put(context.Background(), "tn_a", "invoices/1.pdf", r)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Put #%d: %v", i, err)
		}
		if infos[i].SHA256 != sha(contents[i]) {
			t.Errorf("Put #%d returned sha256 %s, want %s", i, infos[i].SHA256, sha(contents[i]))
		}
	}
	got, info, err := readDoc(t, b.store, "tn_a", "invoices/1.pdf")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(contents, func(c []byte) bool { return bytes.Equal(c, got) }) {
		t.Errorf("after concurrent Puts the document (%d bytes) is none of the writers' contents", len(got))
	}
	if info.SHA256 != sha(got) || info.Bytes != int64(len(got)) {
		t.Errorf("Open info %+v does not describe the content read", info)
	}
	want := []string{"./", "tn_a/", "tn_a/.tmp~/", "tn_a/invoices/", "tn_a/invoices/1.pdf"}
	if got := files(t, b.store.Root()); !slices.Equal(got, want) {
		t.Errorf("store holds %q, want %q (no temporary files)", got, want)
	}
}

func TestFSFailedPutKeepsPreviousVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		reader  func(cancel context.CancelFunc) io.Reader
		wantErr error
	}{
		{"reader fails", func(context.CancelFunc) io.Reader {
			return io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(io.ErrUnexpectedEOF))
		}, io.ErrUnexpectedEOF},
		{"cancelled mid-copy", func(cancel context.CancelFunc) io.Reader {
			return io.MultiReader(strings.NewReader("partial"), cancelReader(cancel), strings.NewReader("more"))
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupFS(t)
			mustPut(t, b.store, "tn_a", "doc.pdf", []byte("old"))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if _, err := b.store.Put(ctx, "tn_a", "doc.pdf", tt.reader(cancel)); !errors.Is(err, tt.wantErr) {
				t.Errorf("Put error = %v, want %v", err, tt.wantErr)
			}
			got, _, err := readDoc(t, b.store, "tn_a", "doc.pdf")
			if err != nil || string(got) != "old" {
				t.Errorf("after a failed Put the document is %q, %v; want the old version", got, err)
			}
			want := []string{"./", "tn_a/", "tn_a/.tmp~/", "tn_a/doc.pdf"}
			if got := files(t, b.store.Root()); !slices.Equal(got, want) {
				t.Errorf("store holds %q, want %q (no temporary files)", got, want)
			}
		})
	}
}

// cancelReader calls cancel when read, then reports EOF.
type cancelReader context.CancelFunc

func (c cancelReader) Read([]byte) (int, error) {
	c()
	return 0, io.EOF
}

func TestFSCancelledContext(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	mustPut(t, b.store, "tn_a", "doc.pdf", []byte("doc"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.store.Put(ctx, "tn_a", "new.pdf", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put error = %v, want context.Canceled", err)
	}
	if _, _, err := b.store.Open(ctx, "tn_a", "doc.pdf"); !errors.Is(err, context.Canceled) {
		t.Errorf("Open error = %v, want context.Canceled", err)
	}
	if err := b.store.DeleteTenant(ctx, "tn_a"); !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteTenant error = %v, want context.Canceled", err)
	}
	if _, _, err := readDoc(t, b.store, "tn_a", "doc.pdf"); err != nil {
		t.Errorf("document gone after cancelled calls: %v", err)
	}
}

func TestFSDeleteTenant(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	ctx := testContext(t)
	mustPut(t, b.store, "tn_a", "invoices/1.pdf", []byte("a1"))
	mustPut(t, b.store, "tn_a", "invoices/2.pdf", []byte("a2"))
	mustPut(t, b.store, "tn_ab", "invoices/1.pdf", []byte("ab1")) // shares a prefix
	mustPut(t, b.store, "tn_b", "invoices/1.pdf", []byte("b1"))

	if err := b.store.DeleteTenant(ctx, "tn_a"); err != nil {
		t.Fatalf("DeleteTenant(tn_a): %v", err)
	}
	for _, key := range []string{"invoices/1.pdf", "invoices/2.pdf"} {
		if _, _, err := readDoc(t, b.store, "tn_a", key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open(tn_a, %s) after delete: %v, want ErrNotFound", key, err)
		}
	}
	for tenant, want := range map[string]string{"tn_ab": "ab1", "tn_b": "b1"} {
		if got, _, err := readDoc(t, b.store, tenant, "invoices/1.pdf"); err != nil || string(got) != want {
			t.Errorf("Open(%s) after deleting tn_a = %q, %v; want %q", tenant, got, err, want)
		}
	}
	if err := b.store.DeleteTenant(ctx, "tn_a"); err != nil {
		t.Errorf("DeleteTenant(tn_a) again: %v, want nil", err)
	}
	if err := b.store.DeleteTenant(ctx, "tn_never"); err != nil {
		t.Errorf("DeleteTenant(tenant without documents): %v, want nil", err)
	}
}

// TestFSDeleteTenantIsDurable: once DeleteTenant returns, the removal of
// the tenant's directory is on stable storage: the store's root, which held
// its entry, is fsynced after the directory is gone. It was not, and a
// crash soon after a tenant's erasure (an ext4 shut down without its
// journal flushed, then mounted again) brought back every document of the
// erased tenant, whose catalog row was gone, so nothing removed them again.
func TestFSDeleteTenantIsDurable(t *testing.T) {
	b := setupFS(t)
	ctx := testContext(t)
	mustPut(t, b.store, "tn_a", "invoices/1.pdf", []byte("a1"))
	mustPut(t, b.store, "tn_b", "invoices/1.pdf", []byte("b1"))
	tenantDir := filepath.Join(b.store.Root(), "tn_a")
	var synced []string
	storage.SetTestHookSyncDir(t, func(dir string) {
		if dir != "." {
			return
		}
		if _, err := os.Lstat(tenantDir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the root was fsynced while the tenant's directory was still there (%v)", err)
		}
		synced = append(synced, dir)
	})
	if err := b.store.DeleteTenant(ctx, "tn_a"); err != nil {
		t.Fatalf("DeleteTenant: %v", err)
	}
	if len(synced) != 1 {
		t.Fatalf("DeleteTenant fsynced the store's root %d times after removing the tenant's directory, want once: a crash could bring the erased tenant's documents back", len(synced))
	}
	if got, _, err := readDoc(t, b.store, "tn_b", "invoices/1.pdf"); err != nil || string(got) != "b1" {
		t.Errorf("the other tenant's document: %q, %v", got, err)
	}
}

// TestFSPrepareTenant: a prepared tenant has its directories before its
// first document, the documents then go into them, and preparing again
// (or a tenant that has documents) changes nothing.
func TestFSPrepareTenant(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	ctx := testContext(t)
	mustPut(t, b.store, "tn_b", "invoices/1.pdf", []byte("b1"))
	before := files(t, filepath.Join(b.store.Root(), "tn_b"))

	if err := b.store.PrepareTenant(ctx, "tn_a", "invoices", "exports/2026"); err != nil {
		t.Fatalf("PrepareTenant: %v", err)
	}
	want := []string{"./", ".tmp~/", "exports/", "exports/2026/", "invoices/"}
	if got := files(t, filepath.Join(b.store.Root(), "tn_a")); !slices.Equal(got, want) {
		t.Fatalf("prepared tenant holds %q, want %q", got, want)
	}
	mustPut(t, b.store, "tn_a", "invoices/1.pdf", []byte("a1"))
	for _, id := range []string{"tn_a", "tn_b"} {
		if err := b.store.PrepareTenant(ctx, id, "invoices"); err != nil {
			t.Fatalf("PrepareTenant(%s) again: %v", id, err)
		}
	}
	if got, _, err := readDoc(t, b.store, "tn_a", "invoices/1.pdf"); err != nil || string(got) != "a1" {
		t.Errorf("document after preparing again = %q, %v", got, err)
	}
	if after := files(t, filepath.Join(b.store.Root(), "tn_b")); !slices.Equal(after, before) {
		t.Errorf("preparing a tenant with documents changed it:\nbefore %q\nafter  %q", before, after)
	}
	if err := b.store.PrepareTenant(ctx, "tn_c"); err != nil {
		t.Fatalf("PrepareTenant without dirs: %v", err)
	}
	if got := files(t, filepath.Join(b.store.Root(), "tn_c")); !slices.Equal(got, []string{"./", ".tmp~/"}) {
		t.Errorf("tenant prepared without dirs holds %q", got)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.store.PrepareTenant(cancelled, "tn_d", "invoices"); !errors.Is(err, context.Canceled) {
		t.Errorf("PrepareTenant with a cancelled context: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.store.Root(), "tn_d")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a cancelled PrepareTenant made the tenant's directory: %v", err)
	}
}

func TestValidateDocumentKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"invoices/42.pdf", true},
		{"A-Z_0.9/x.y.z", true},
		{".hidden", true},
		{"a/..b/c..", true},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a", 256), false},
		{"", false},
		{".", false},
		{"..", false},
		{"a/.", false},
		{"a/../b", false},
		{"/a", false},
		{"a/", false},
		{"a//b", false},
		{`a\b`, false},
		{"a\x00", false},
		{"a:b", false},
		{"a%2fb", false},
		{"a~", false},
	}
	for _, tt := range tests {
		err := storage.ValidateDocumentKey(tt.key)
		if tt.ok && err != nil {
			t.Errorf("ValidateDocumentKey(%.30q) = %v, want nil", tt.key, err)
		}
		if !tt.ok && !errors.Is(err, storage.ErrInvalidDocumentKey) {
			t.Errorf("ValidateDocumentKey(%.30q) = %v, want ErrInvalidDocumentKey", tt.key, err)
		}
	}
}

// TestFSDelete: Delete removes one document of one tenant and nothing
// else; a missing one is not an error; a hostile key or a directory is
// refused and changes nothing.
func TestFSDelete(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	ctx := testContext(t)
	mustPut(t, b.store, "tn_a", "invoices/1.pdf", []byte("a1"))
	mustPut(t, b.store, "tn_a", "invoices/2.pdf", []byte("a2"))
	mustPut(t, b.store, "tn_b", "invoices/1.pdf", []byte("b1"))
	if err := b.store.Delete(ctx, "tn_a", "invoices/1.pdf"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, err := readDoc(t, b.store, "tn_a", "invoices/1.pdf"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Open after Delete: %v, want ErrNotFound", err)
	}
	for _, d := range []struct{ tenant, key, want string }{{"tn_a", "invoices/2.pdf", "a2"}, {"tn_b", "invoices/1.pdf", "b1"}} {
		if got, _, err := readDoc(t, b.store, d.tenant, d.key); err != nil || string(got) != d.want {
			t.Errorf("Open(%s, %s) after Delete = %q, %v; want %q", d.tenant, d.key, got, err, d.want)
		}
	}
	if err := b.store.Delete(ctx, "tn_a", "invoices/1.pdf"); err != nil {
		t.Errorf("Delete again: %v, want nil", err)
	}
	before := files(t, b.parent)
	for _, key := range []string{"invoices", "../tn_b/invoices/1.pdf", "/etc/passwd", ""} {
		if err := b.store.Delete(ctx, "tn_a", key); err == nil {
			t.Errorf("Delete(%q) succeeded", key)
		}
	}
	if err := b.store.Delete(ctx, "../tn_b", "invoices/1.pdf"); err == nil {
		t.Error("Delete with a hostile tenant id succeeded")
	}
	if after := files(t, b.parent); !slices.Equal(after, before) {
		t.Errorf("refused deletes changed the tree:\nbefore %q\nafter  %q", before, after)
	}
}

// TestFSRemoveStaleTemp: the temporary files of writes a killed process
// left behind (older than the cutoff) are removed from the tenants'
// temporary directories, and, in a store an older release wrote them to,
// from next to the documents; documents, younger temporary files (another
// process's write in progress) and a temporary name on a directory are
// kept.
func TestFSRemoveStaleTemp(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	ctx := context.Background()
	if _, err := b.store.Put(ctx, "tn_a", "invoices/1.pdf", strings.NewReader("doc")); err != nil {
		t.Fatal(err)
	}
	root := b.store.Root()
	old := time.Now().Add(-2 * storage.StaleTempAge)
	writeFile(t, root, "tn_a/.tmp~/.put~1.pdf.STALE1", old)
	writeFile(t, root, "tn_c/.tmp~/.put~4.pdf.STALE4", old)
	writeFile(t, root, "tn_a/.tmp~/.put~3.pdf.FRESH", time.Now())
	writeFile(t, root, "tn_b/invoices/deep/.put~2.pdf.STALE2", old) // an older release's
	if err := os.Mkdir(filepath.Join(root, "tn_a", ".put~dir"), 0o750); err != nil {
		t.Fatal(err)
	}

	n, err := b.store.RemoveStaleTemp(ctx, time.Now().Add(-storage.StaleTempAge))
	if err != nil {
		t.Fatalf("RemoveStaleTemp: %v", err)
	}
	if n != 3 {
		t.Errorf("removed %d, want 3", n)
	}
	want := []string{"./", walkedStamp, "tn_a/", "tn_a/.put~dir/", "tn_a/.tmp~/", "tn_a/.tmp~/.put~3.pdf.FRESH", "tn_a/invoices/",
		"tn_a/invoices/1.pdf", "tn_b/", "tn_b/invoices/", "tn_b/invoices/deep/", "tn_c/", "tn_c/.tmp~/"}
	got := files(t, root)
	for i := range got {
		got[i] = filepath.ToSlash(got[i])
	}
	if !slices.Equal(got, want) {
		t.Errorf("left %q, want %q", got, want)
	}
}

// walkedStamp is the file in the store's root that says a walk of the
// whole tree left no temporary file next to a document.
const walkedStamp = ".stale-walked~"

// writeFile writes a file at rel under root, modified at mtime, creating
// its directories.
func writeFile(t *testing.T, root, rel string, mtime time.Time) string {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("partial"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFSRemoveStaleTempWalksTheTreeUntilClean: in a store where an older
// release wrote temporary files next to the documents, every call walks
// the whole tree until a walk leaves none there (a young one is such a
// release's write in progress, and may be left by a kill); from then on it
// lists the tenants' temporary directories only, so a file next to a
// document stays, until the stamp is removed.
func TestFSRemoveStaleTempWalksTheTreeUntilClean(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	ctx := context.Background()
	root := b.store.Root()
	old := time.Now().Add(-2 * storage.StaleTempAge)
	remove := func(want int) {
		t.Helper()
		n, err := b.store.RemoveStaleTemp(ctx, time.Now().Add(-storage.StaleTempAge))
		if err != nil || n != want {
			t.Fatalf("RemoveStaleTemp = %d, %v; want %d", n, err, want)
		}
	}
	stamped := func() bool {
		t.Helper()
		_, err := os.Stat(filepath.Join(root, walkedStamp))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}
	exists := func(p string) bool {
		t.Helper()
		_, err := os.Stat(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}

	young := writeFile(t, root, "tn_a/invoices/.put~1.pdf.YOUNG", time.Now())
	remove(0)
	if !exists(young) || stamped() {
		t.Fatalf("after a walk that met a write in progress next to its document: file kept %v (want true), stamp %v (want false)",
			exists(young), stamped())
	}
	if err := os.Chtimes(young, old, old); err != nil {
		t.Fatal(err)
	}
	remove(1)
	if exists(young) || !stamped() {
		t.Fatalf("after a walk that removed the last file next to a document: file kept %v, stamp %v; want false, true",
			exists(young), stamped())
	}

	late := writeFile(t, root, "tn_b/invoices/.put~2.pdf.LATE", old)
	writeFile(t, root, "tn_b/.tmp~/.put~3.pdf.STALE", old)
	remove(1)
	if !exists(late) {
		t.Fatalf("%s removed although the store was stamped: the whole tree was walked again", late)
	}
	if err := os.Remove(filepath.Join(root, walkedStamp)); err != nil {
		t.Fatal(err)
	}
	remove(1)
	if exists(late) || !stamped() {
		t.Fatalf("after the stamp was removed: %s kept %v, stamp %v; want false, true", late, exists(late), stamped())
	}
}

// writerChildEnv holds the store's root when this test binary runs again
// as TestFSWriterChild's process.
const writerChildEnv = "STORAGE_TEST_WRITER_ROOT"

// writerChildContent is what the child writes before it blocks.
const writerChildContent = "%PDF-partial"

// TestFSWriterChild is not a test on its own: TestFSKilledWriterLeftover
// runs this test binary again with writerChildEnv set, and this function
// then writes a document of tenant tn_killed whose content stops after
// writerChildContent, blocked on reading its standard input until the
// parent kills the process. In a normal run it does nothing.
func TestFSWriterChild(t *testing.T) {
	root := os.Getenv(writerChildEnv)
	if root == "" {
		return
	}
	store, err := storage.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Put(context.Background(), "tn_killed", "invoices/7.pdf", io.MultiReader(strings.NewReader(writerChildContent), os.Stdin))
	t.Fatalf("Put returned (%v) before the process was killed", err)
}

// TestFSKilledWriterLeftover: a process killed (SIGKILL) in the middle of
// a Put leaves its temporary file in the tenant's temporary directory and
// nothing under the key. RemoveStaleTemp keeps that file while it is
// younger than the cutoff (it could be a write in progress) and removes it
// once older; a write in progress in this process meanwhile is never
// removed, and completes.
func TestFSKilledWriterLeftover(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	ctx := testContext(t)
	root := b.store.Root()
	tempDir := filepath.Join(root, "tn_killed", ".tmp~")

	cmd := exec.Command(os.Args[0], "-test.run=^TestFSWriterChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), writerChildEnv+"="+root)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = stdin.Close()
	}()

	// leftovers returns the temporary files of key name in tempDir.
	leftovers := func(name string) []string {
		t.Helper()
		entries, err := os.ReadDir(tempDir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".put~"+name+".") {
				out = append(out, filepath.Join(tempDir, e.Name()))
			}
		}
		return out
	}
	var leftover string
	for deadline := time.Now().Add(30 * time.Second); leftover == ""; {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the writer exited (%v) before it was killed:\n%s", err, out.String())
		default:
		}
		if l := leftovers("7.pdf"); len(l) == 1 {
			if content, err := os.ReadFile(l[0]); err == nil && string(content) == writerChildContent {
				leftover = l[0]
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no temporary file of the writer's with its content in %s; its output:\n%s", tempDir, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil {
		t.Fatal("the killed writer exited cleanly")
	}
	exited <- nil // for the deferred clean-up
	if _, _, err := readDoc(t, b.store, "tn_killed", "invoices/7.pdf"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Open of the killed write's key: %v, want ErrNotFound", err)
	}

	// A write of this process in progress, its temporary file in the same
	// directory.
	pr, pw := io.Pipe()
	liveDone := make(chan error, 1)
	go func() {
		_, err := b.store.Put(ctx, "tn_killed", "invoices/8.pdf", pr)
		liveDone <- err
	}()
	if _, err := pw.Write([]byte("%PDF-live")); err != nil {
		t.Fatal(err)
	}
	if l := leftovers("8.pdf"); len(l) != 1 {
		t.Fatalf("the write in progress has %d temporary files, want 1", len(l))
	}

	cutoff := func() time.Time { return time.Now().Add(-storage.StaleTempAge) }
	if n, err := b.store.RemoveStaleTemp(ctx, cutoff()); err != nil || n != 0 {
		t.Fatalf("RemoveStaleTemp while the leftover is young = %d, %v; want 0", n, err)
	}
	if _, err := os.Stat(leftover); err != nil {
		t.Fatalf("the young leftover (could be a write in progress) was removed: %v", err)
	}
	old := time.Now().Add(-2 * storage.StaleTempAge) // the leftover an hour later
	if err := os.Chtimes(leftover, old, old); err != nil {
		t.Fatal(err)
	}
	if n, err := b.store.RemoveStaleTemp(ctx, cutoff()); err != nil || n != 1 {
		t.Fatalf("RemoveStaleTemp of the old leftover = %d, %v; want 1", n, err)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the old leftover is still there: %v", err)
	}
	if l := leftovers("8.pdf"); len(l) != 1 {
		t.Fatalf("the write in progress has %d temporary files after RemoveStaleTemp, want 1", len(l))
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-liveDone; err != nil {
		t.Fatalf("the write in progress: %v", err)
	}
	if got, _, err := readDoc(t, b.store, "tn_killed", "invoices/8.pdf"); err != nil || string(got) != "%PDF-live" {
		t.Fatalf("the document of the write in progress: %q, %v", got, err)
	}
	if l := leftovers(""); len(l) != 0 {
		t.Fatalf("temporary files left: %q", l)
	}
}
