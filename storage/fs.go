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
	"syscall"

	"github.com/invoicing/tenantworker/tenantctx"
)

// FS is a DocumentStore in a directory tree: <root>/<tenantID>/<key>.
// Writes are atomic (temporary file, fsync, rename, fsync of the directory),
// so a reader sees the old or the new document, never a mix, and a crash
// leaves no half-written document under its key. Every file operation goes
// through an os.Root, so even a symlink planted in the tree cannot lead
// outside root. It is safe for concurrent use.
type FS struct {
	root string
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

// NewFS returns a document store under root, creating it (mode 0750) if
// needed.
func NewFS(root string) (*FS, error) {
	if root == "" {
		return nil, fmt.Errorf("new document store: empty root")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("new document store %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, fsDirPerm); err != nil {
		return nil, fmt.Errorf("new document store %s: %w", root, err)
	}
	return &FS{root: abs}, nil
}

// Root returns the store's directory.
func (s *FS) Root() string { return s.root }

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

// Put writes r to a temporary file next to the document while hashing it,
// fsyncs it, renames it over the key and fsyncs the directory.
func (s *FS) Put(ctx context.Context, tenantID, key string, r io.Reader) (DocumentInfo, error) {
	if err := ctx.Err(); err != nil {
		return DocumentInfo{}, fmt.Errorf("put document %q: %w", key, err)
	}
	rel, err := docPath(tenantID, key)
	if err != nil {
		return DocumentInfo{}, fmt.Errorf("put document: %w", err)
	}
	info, err := s.put(ctx, rel, key, r)
	if err != nil {
		return DocumentInfo{}, fmt.Errorf("put document %s of tenant %s: %w", key, tenantID, err)
	}
	return info, nil
}

func (s *FS) put(ctx context.Context, rel, key string, r io.Reader) (info DocumentInfo, err error) {
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return DocumentInfo{}, err
	}
	defer root.Close()
	dir := filepath.Dir(rel)
	if err := root.MkdirAll(dir, fsDirPerm); err != nil {
		return DocumentInfo{}, err
	}
	tmp := filepath.Join(dir, tempMarker+filepath.Base(rel)+"."+rand.Text())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fsFilePerm)
	if err != nil {
		return DocumentInfo{}, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r})
	if err != nil {
		return DocumentInfo{}, fmt.Errorf("write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return DocumentInfo{}, err
	}
	if err := f.Close(); err != nil {
		return DocumentInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return DocumentInfo{}, err // cancelled: keep the previous version
	}
	if err := root.Rename(tmp, rel); err != nil {
		return DocumentInfo{}, err
	}
	if err := syncDir(root, dir); err != nil {
		return DocumentInfo{}, err
	}
	return DocumentInfo{Key: key, SHA256: hexSum(h), Bytes: n}, nil
}

// syncDir fsyncs a directory, making a rename in it durable.
func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return d.Close()
}

// Stat returns the size of the document under key without reading it;
// ErrNotFound when there is none.
func (s *FS) Stat(ctx context.Context, tenantID, key string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("stat document %q: %w", key, err)
	}
	rel, err := docPath(tenantID, key)
	if err != nil {
		return 0, fmt.Errorf("stat document: %w: %w", ErrNotFound, err)
	}
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return 0, fmt.Errorf("stat document %s of tenant %s: %w", key, tenantID, err)
	}
	defer root.Close()
	st, err := root.Stat(rel)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || (err == nil && !st.Mode().IsRegular()) {
		return 0, fmt.Errorf("stat document %s of tenant %s: %w", key, tenantID, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("stat document %s of tenant %s: %w", key, tenantID, err)
	}
	return st.Size(), nil
}

// Open opens the document and hashes it through the open file, so the
// returned DocumentInfo describes exactly the content the caller reads even
// when a concurrent Put replaces the key.
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
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return nil, DocumentInfo{}, err
	}
	defer root.Close()
	f, err := root.Open(rel)
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
		return nil, DocumentInfo{}, ErrNotFound // a directory of other keys
	}
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, f})
	if err != nil {
		return nil, DocumentInfo{}, fmt.Errorf("hash: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, DocumentInfo{}, err
	}
	return f, DocumentInfo{Key: key, SHA256: hexSum(h), Bytes: n}, nil
}

// DeleteTenant removes the tenant's directory and everything in it; a
// tenant without documents is not an error.
func (s *FS) DeleteTenant(ctx context.Context, tenantID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete documents of tenant %.64q: %w", tenantID, err)
	}
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return fmt.Errorf("delete documents: %w", err)
	}
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return fmt.Errorf("delete documents of tenant %s: %w", tenantID, err)
	}
	defer root.Close()
	if err := root.RemoveAll(tenantID); err != nil {
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
