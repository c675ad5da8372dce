package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/invoicing/tenantworker/tenantctx"
)

// FS is a DocumentStore in a directory tree: <root>/<tenantID>/<key>.
// Writes are atomic (temporary file, fsync, rename, fsync of the directory),
// so a reader sees the old or the new document, never a mix, and a crash
// leaves no half-written document under its key. Every file operation goes
// beneath the store's root, so even a symlink planted in the tree cannot
// lead outside root; and since a link that stays inside root could still
// lead one tenant's keys to another tenant's documents, Put, Open, Delete
// and PrepareTenant refuse a path with a symbolic link among its
// directories (Open also as the document itself: Put replaces such a
// link). On Linux 5.6 and later they resolve a document's directory once,
// with openat2(2), refusing any link, and work relative to what they
// opened, so a directory swapped for a link meanwhile changes nothing;
// without openat2 (OpenAt2 reports false) they check the path for links
// before each operation and go through an os.Root, which leaves a window
// between the check and the operation. It is safe for concurrent use.
type FS struct {
	root    string
	openat2 bool // resolve with openat2 (beneath), else check (refuseLinks)
	// made: the store was opened with NewFS, which made sure its root
	// exists; a root missing since is a fault (a volume unmounted), not a
	// store that holds nothing.
	made bool
}

// FS implements DocumentStore.
var _ DocumentStore = (*FS)(nil)

// Permissions of what FS creates.
const (
	fsDirPerm  = 0o750
	fsFilePerm = 0o640
)

// tempMarker starts the name of a file being written. It contains '~',
// which no key may, so a temporary file never shadows a document.
const tempMarker = ".put~"

// tempDirName is the directory in each tenant's directory where Put
// writes its temporary files (<root>/<tenantID>/.tmp~), renaming each
// into its document's directory when it is complete. No key may contain
// '~', so it is never a document's directory; it lies in the tenant's
// directory, so it goes with the tenant's documents (DeleteTenant); and
// RemoveStaleTemp finds every temporary file by listing these directories
// only, not the documents.
const tempDirName = ".tmp~"

// NewFS returns a document store under root, creating it (mode 0750) if
// needed.
func NewFS(root string) (*FS, error) {
	return newFS(root, true)
}

// OpenFS returns the document store under root without creating root:
// for a process that writes no documents (the operator CLI's one-shot
// commands), so that it leaves no empty directory where DOCUMENTS_DIR
// points to nothing. While root is missing, writes fail with an error that
// wraps fs.ErrNotExist and reads find no document (ErrNotFound).
func OpenFS(root string) (*FS, error) {
	return newFS(root, false)
}

// newFS is NewFS, or OpenFS when create is false.
func newFS(root string, create bool) (*FS, error) {
	if root == "" {
		return nil, fmt.Errorf("new document store: empty root")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("new document store %s: %w", root, err)
	}
	if create {
		if err := os.MkdirAll(abs, fsDirPerm); err != nil {
			return nil, fmt.Errorf("new document store %s: %w", root, err)
		}
	}
	return &FS{root: abs, openat2: openat2Available(), made: create}, nil
}

// Root returns the store's directory.
func (s *FS) Root() string { return s.root }

// probeMarker starts the name of CheckWritable's probe file. It contains
// '~', which no tenant id may, so the probe never stands where a tenant's
// directory could.
const probeMarker = ".probe~"

// CheckWritable checks that the store can write documents as Put writes
// them: it creates a probe file in the store's root, writes and fsyncs it,
// removes it and fsyncs the root. Its error, which wraps the system's (a
// read-only file system, a root the process may not write, a full disk),
// says that every write of a document would fail.
func (s *FS) CheckWritable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("check document store %s: %w", s.root, err)
	}
	if err := s.probe(); err != nil {
		return fmt.Errorf("document store %s is not writable: %w", s.root, err)
	}
	return nil
}

// probe writes, fsyncs and removes a probe file in the root.
func (s *FS) probe() (err error) {
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return err
	}
	defer root.Close()
	name := probeMarker + rand.Text()
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fsFilePerm)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = root.Remove(name)
		}
	}()
	_, err = f.Write([]byte("probe"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := root.Remove(name); err != nil {
		return err
	}
	return syncDir(root, ".")
}

// OpenAt2 reports whether the store resolves documents' paths with
// openat2(2), atomically refusing symbolic links; when it is false (a
// kernel before Linux 5.6, a seccomp filter that refuses openat2, or
// another system) a directory swapped for a link between the check of a
// path and the operation on it can still lead a tenant's keys to another
// tenant's documents.
func (s *FS) OpenAt2() bool { return s.openat2 }

// docPath validates tenantID and key and returns the document's path
// relative to the store's root.
func docPath(tenantID, key string) (string, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return "", err
	}
	if err := ValidateDocumentKey(key); err != nil {
		return "", err
	}
	rel := filepath.Join(tenantID, filepath.FromSlash(key))
	// Defence in depth: the validated key cannot climb, and this proves it.
	if !strings.HasPrefix(rel, tenantID+string(filepath.Separator)) || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%w: %q leaves tenant %s", ErrInvalidDocumentKey, key, tenantID)
	}
	return rel, nil
}

// Put writes r to a temporary file in the tenant's temporary directory
// while hashing it, fsyncs it, renames it over the key and fsyncs the
// document's directory.
//
// Durability: when Put returns without error the document is on stable
// storage under its key. The file's data is fsynced before the rename
// (a crash never leaves a short or empty file under the key), the
// directory after it (the new entry survives a crash). The caller records
// the document (invoice_documents) only after Put returned, so a recorded
// document is always durable. A directory Put had to create (a tenant's
// first document) is made durable as well: each directory it created, and
// the one that holds it, is fsynced before the document is written into
// it. A directory that already exists costs nothing extra: Put opens it
// and creates directories only when that open finds none.
func (s *FS) Put(ctx context.Context, tenantID, key string, r io.Reader) (DocumentInfo, error) {
	if err := ctx.Err(); err != nil {
		return DocumentInfo{}, fmt.Errorf("put document %q: %w", key, err)
	}
	rel, err := docPath(tenantID, key)
	if err != nil {
		return DocumentInfo{}, fmt.Errorf("put document: %w", err)
	}
	info, err := s.put(ctx, tenantID, rel, key, r)
	if err != nil {
		return DocumentInfo{}, fmt.Errorf("put document %s of tenant %s: %w", key, tenantID, err)
	}
	return info, nil
}

func (s *FS) put(ctx context.Context, tenantID, rel, key string, r io.Reader) (info DocumentInfo, err error) {
	dirs := atomicDirs{dir: filepath.Dir(rel), tempDir: filepath.Join(tenantID, tempDirName)}
	var root *os.Root // nil with openat2: writeAtomic then needs only the directories
	if s.openat2 {
		b, err := openBeneath(s.root)
		if err != nil {
			return DocumentInfo{}, err
		}
		defer b.Close()
		if dirs.d, err = b.makeDir(dirs.dir, true); err != nil {
			return DocumentInfo{}, err
		}
		defer dirs.d.Close()
		if dirs.td, err = b.makeDir(dirs.tempDir, false); err != nil {
			return DocumentInfo{}, err
		}
		defer dirs.td.Close()
		beforeUse()
	} else {
		if root, err = os.OpenRoot(s.root); err != nil {
			return DocumentInfo{}, err
		}
		defer root.Close()
		if err := refuseLinks(root, dirs.dir); err != nil {
			return DocumentInfo{}, err
		}
		if err := refuseLinks(root, dirs.tempDir); err != nil {
			return DocumentInfo{}, err
		}
		beforeUse()
		d, err := openRootDir(root, dirs.dir)
		if errors.Is(err, fs.ErrNotExist) {
			if err := makeDirs(root, dirs.dir); err != nil {
				return DocumentInfo{}, err
			}
			d, err = openRootDir(root, dirs.dir)
		}
		if err != nil {
			return DocumentInfo{}, err
		}
		defer d.Close()
		td, err := openTempDir(root, dirs.tempDir)
		if err != nil {
			return DocumentInfo{}, err
		}
		defer td.Close()
		dirs.d, dirs.td = d, td
	}
	h := sha256.New()
	n, err := writeAtomic(ctx, root, dirs, filepath.Base(rel), h, r)
	if err != nil {
		return DocumentInfo{}, err
	}
	return DocumentInfo{Key: key, SHA256: hexSum(h), Bytes: n}, nil
}

// errLink is wrapped by the errors of a path with a symbolic link: os.Root
// keeps a link inside the store's root, but one inside it could still lead
// a tenant's key to another tenant's documents.
var errLink = errors.New("symbolic link in the document store")

// errNotDocument is Delete's error for a key that names a directory or
// anything else but a regular file.
var errNotDocument = errors.New("not a document")

// testHookBeforeUse, set by tests only, is called between the check of a
// document's path for symbolic links (with openat2: its resolution to its
// directory's descriptor) and the operation on it, so that a test can
// have a directory on the path swapped right there.
var testHookBeforeUse func()

// testHookSyncDir, set by tests only, is called by syncDir with the
// directory (a path under the store's root) it is about to fsync.
var testHookSyncDir func(dir string)

// beforeUse calls testHookBeforeUse when a test set it.
func beforeUse() {
	if testHookBeforeUse != nil {
		testHookBeforeUse()
	}
}

// refuseLinks returns an error wrapping errLink when rel (a path under
// root) or one of the directories on its way is a symbolic link. A
// component that does not exist ends the check: nothing after it exists.
func refuseLinks(root *os.Root, rel string) error {
	for i := 0; ; {
		p, j := rel, strings.IndexRune(rel[i:], filepath.Separator)
		if j >= 0 {
			p = rel[:i+j]
		}
		st, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		if err != nil {
			return err
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s: %w", p, errLink)
		}
		if j < 0 {
			return nil
		}
		i += j + 1
	}
}

// atomicDirs are the two directories of a write, each as a path under
// the store's root and opened through it: dir, where the document goes,
// and tempDir, the tenant's temporary directory, where it is written.
type atomicDirs struct {
	dir     string
	d       *os.File
	tempDir string
	td      *os.File
}

// openTempDir opens the tenant's temporary directory tempDir, creating
// it when it is missing. Its creation is not fsynced: a document written
// through it is durable by the fsync of its own directory after the
// rename, and a temporary directory a crash loses held nothing but
// temporary files.
func openTempDir(root *os.Root, tempDir string) (*os.File, error) {
	td, err := openRootDir(root, tempDir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := root.Mkdir(tempDir, fsDirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		td, err = openRootDir(root, tempDir)
	}
	return td, err
}

// openRootDir opens the directory dir (a path under root) without blocking:
// the open of a FIFO planted in its place would wait for a writer.
// Anything but a directory fails with an error wrapping syscall.ENOTDIR.
func openRootDir(root *os.Root, dir string) (*os.File, error) {
	d, err := root.OpenFile(dir, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := d.Stat()
	if err == nil && !st.IsDir() {
		err = &os.PathError{Op: "open", Path: dir, Err: syscall.ENOTDIR}
	}
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	return d, nil
}

// tempNameMax is how much of a document's name its temporary file's name
// keeps: with tempMarker, a dot and rand.Text's 26 characters it stays
// within the 255 bytes of a file name (NAME_MAX), for every valid key.
const tempNameMax = 200

// tempName is the name of a new temporary file for the document name.
func tempName(name string) string {
	return tempMarker + name[:min(len(name), tempNameMax)] + "." + rand.Text()
}

// copyHashed writes what r holds to w and h. A reader that holds its
// bytes (a *bytes.Buffer, a *bytes.Reader: io.WriterTo) is written with
// one write; any other is copied in chunks, checking ctx between them.
func copyHashed(ctx context.Context, w io.Writer, h hash.Hash, r io.Reader) (int64, error) {
	if wt, ok := r.(io.WriterTo); ok {
		return wt.WriteTo(hashingWriter{w: w, h: h})
	}
	return io.Copy(io.MultiWriter(w, h), ctxReader{ctx, r})
}

// hashingWriter writes to a file and a hash, in that order: a short write
// to the file is not hashed.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
}

func (w hashingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.h.Write(p[:n]) // a hash.Hash never fails
	return n, err
}

// makeDirs creates dir and its missing parents under root, and makes
// each new entry durable: every directory it created, and the directory
// that holds each one, is fsynced.
func makeDirs(root *os.Root, dir string) error {
	var created []string
	for d := dir; d != "." && d != string(filepath.Separator); d = filepath.Dir(d) {
		if _, err := root.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		created = append(created, d)
	}
	if err := root.MkdirAll(dir, fsDirPerm); err != nil {
		return err
	}
	// created runs deepest first: each one's entry lives in the next one,
	// fsynced here too, and the last one's in the directory that already
	// existed above them all.
	for _, d := range created {
		if err := syncDir(root, d); err != nil {
			return err
		}
	}
	if len(created) > 0 {
		return syncDir(root, filepath.Dir(created[len(created)-1]))
	}
	return nil
}

// syncDir fsyncs a directory, making a rename or a removal in it durable.
func syncDir(root *os.Root, dir string) error {
	d, err := openRootDir(root, dir)
	if err != nil {
		return err
	}
	if testHookSyncDir != nil {
		testHookSyncDir(dir)
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return d.Close()
}

// FS implements TenantPreparer.
var _ TenantPreparer = (*FS)(nil)

// PrepareTenant creates the tenant's directory, the directories dirs in it
// (key prefixes such as "invoices") and its temporary directory, each new
// one made durable as Put makes the directories it creates (the directory
// and the one holding it fsynced), so that the tenant's first documents
// are written into directories that exist. Directories that exist already
// are left as they are, and nothing else is touched: calling it again, or
// for a tenant with documents, changes nothing.
func (s *FS) PrepareTenant(ctx context.Context, tenantID string, dirs ...string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("prepare documents of tenant %.64q: %w", tenantID, err)
	}
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return fmt.Errorf("prepare documents: %w", err)
	}
	rels := make([]string, 0, len(dirs)+1)
	rels = append(rels, tenantID)
	for _, dir := range dirs {
		rel, err := docPath(tenantID, dir)
		if err != nil {
			return fmt.Errorf("prepare documents of tenant %s: %w", tenantID, err)
		}
		rels = append(rels, rel)
	}
	if err := s.prepare(tenantID, rels); err != nil {
		return fmt.Errorf("prepare documents of tenant %s: %w", tenantID, err)
	}
	return nil
}

// prepare makes the directories rels (paths under the root) and the
// tenant's temporary directory, refusing links on their paths.
func (s *FS) prepare(tenantID string, rels []string) error {
	tempDir := filepath.Join(tenantID, tempDirName)
	if s.openat2 {
		b, err := openBeneath(s.root)
		if err != nil {
			return err
		}
		defer b.Close()
		for _, rel := range rels {
			d, err := b.makeDir(rel, true)
			if err != nil {
				return err
			}
			if err := d.Close(); err != nil {
				return err
			}
		}
		td, err := b.makeDir(tempDir, false)
		if err != nil {
			return err
		}
		return td.Close()
	}
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, rel := range rels {
		if err := refuseLinks(root, rel); err != nil {
			return err
		}
		if err := makeDirs(root, rel); err != nil {
			return err
		}
	}
	if err := refuseLinks(root, tempDir); err != nil {
		return err
	}
	td, err := openTempDir(root, tempDir)
	if err != nil {
		return err
	}
	return td.Close()
}

// Open opens the document and hashes it through the open file, so the
// returned DocumentInfo describes exactly the content the caller reads even
// when a concurrent Put replaces the key. Anything but a regular file under
// the key (a directory of other keys, a FIFO or a device planted there) is
// ErrNotFound, answered at once: the open does not block, as that of a FIFO
// without a writer would.
func (s *FS) Open(ctx context.Context, tenantID, key string) (io.ReadCloser, DocumentInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, DocumentInfo{}, fmt.Errorf("open document %q: %w", key, err)
	}
	rel, err := docPath(tenantID, key)
	if err != nil {
		return nil, DocumentInfo{}, fmt.Errorf("open document: %w: %w", ErrNotFound, err)
	}
	f, info, err := s.open(ctx, rel, key)
	if err != nil {
		return nil, DocumentInfo{}, fmt.Errorf("open document %s of tenant %s: %w", key, tenantID, err)
	}
	return f, info, nil
}

func (s *FS) open(ctx context.Context, rel, key string) (_ *os.File, _ DocumentInfo, err error) {
	f, err := s.openFile(rel)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, DocumentInfo{}, ErrNotFound
	}
	if err != nil {
		return nil, DocumentInfo{}, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, DocumentInfo{}, err
	}
	if !st.Mode().IsRegular() {
		// A directory of other keys, or a FIFO or device planted there.
		return nil, DocumentInfo{}, ErrNotFound
	}
	h := sha256.New()
	buf := hashBuffers.Get().(*[]byte)
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, *buf)
	hashBuffers.Put(buf)
	if err != nil {
		return nil, DocumentInfo{}, fmt.Errorf("hash: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, DocumentInfo{}, err
	}
	return f, DocumentInfo{Key: key, SHA256: hexSum(h), Bytes: n}, nil
}

// openFile opens rel (a path under the root) for reading, refusing a
// symbolic link on its way or in its place.
func (s *FS) openFile(rel string) (*os.File, error) {
	if s.openat2 {
		b, err := openBeneath(s.root)
		if err != nil {
			return nil, err
		}
		defer b.Close()
		d, err := b.dir(filepath.Dir(rel))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		beforeUse()
		return openDocAt(d, filepath.Base(rel))
	}
	return s.openChecked(rel)
}

// openChecked opens rel (a path under the root) through an os.Root after
// checking its path for links (refuseLinks): the way without openat2,
// which leaves a window between the check and the open. It opens without
// blocking, as openDocAt does.
func (s *FS) openChecked(rel string) (*os.File, error) {
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if err := refuseLinks(root, rel); err != nil {
		return nil, err
	}
	beforeUse()
	return root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// hashBuffers are Open's read buffers: it hashes every document it opens
// (a PDF is tens of KiB), and a new 32 KiB buffer per call was nearly all
// it allocated (BenchmarkFSOpen: 33.7 KB and 74-83 us a call before, 1 KB
// and 61-64 us with the pool).
var hashBuffers = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// Delete removes the document under key; one that is not there is not an
// error.
func (s *FS) Delete(ctx context.Context, tenantID, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete document %q: %w", key, err)
	}
	rel, err := docPath(tenantID, key)
	if err != nil {
		return fmt.Errorf("delete document: %w", err)
	}
	if err := s.remove(rel); err != nil {
		return fmt.Errorf("delete document %s of tenant %s: %w", key, tenantID, err)
	}
	return nil
}

// remove removes the document rel (a path under the root), refusing a
// symbolic link on its way; a missing one is not an error, anything but a
// regular file is (errNotDocument).
func (s *FS) remove(rel string) error {
	if s.openat2 {
		b, err := openBeneath(s.root)
		if err != nil {
			return err
		}
		defer b.Close()
		d, err := b.dir(filepath.Dir(rel))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		if err != nil {
			return err
		}
		defer d.Close()
		beforeUse()
		return removeDocAt(d, filepath.Base(rel))
	}
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := refuseLinks(root, filepath.Dir(rel)); err != nil {
		return err
	}
	beforeUse()
	st, err := root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err == nil && !st.Mode().IsRegular() {
		return errNotDocument
	}
	if err == nil {
		err = root.Remove(rel)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// DeleteTenant removes the tenant's directory and everything in it; a
// tenant without documents is not an error, nor is the missing root of a
// store opened with OpenFS, which holds none. The root of a store NewFS
// made, missing since (the volume DOCUMENTS_DIR is on unmounted, say), is
// an error wrapping fs.ErrNotExist: the documents may be there again once
// it is back, and an erasure that went on would leave them for good.
//
// Durability: when it returns without error the removal is on stable
// storage: the store's root, which held the tenant's directory, is
// fsynced after it. A tenant's erasure records its documents as removed
// and then deletes its catalog row, after which nothing looks at its
// directory again: a removal that a crash undid would leave the erased
// tenant's documents in the store for good.
func (s *FS) DeleteTenant(ctx context.Context, tenantID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete documents of tenant %.64q: %w", tenantID, err)
	}
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return fmt.Errorf("delete documents: %w", err)
	}
	root, err := os.OpenRoot(s.root)
	if errors.Is(err, fs.ErrNotExist) && !s.made {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete documents of tenant %s: %w", tenantID, err)
	}
	defer root.Close()
	if err := root.RemoveAll(tenantID); err != nil {
		return fmt.Errorf("delete documents of tenant %s: %w", tenantID, err)
	}
	if err := syncDir(root, "."); err != nil {
		return fmt.Errorf("delete documents of tenant %s: %w", tenantID, err)
	}
	return nil
}

// hexSum returns the lowercase hex digest of h.
func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// ctxReader stops a copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
