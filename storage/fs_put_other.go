//go:build !linux

package storage

import (
	"context"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
)

// writeAtomic writes r (hashed into h) to a new temporary file in the
// tenant's temporary directory (dirs.tempDir under root), fsyncs it,
// renames it to name in the document's directory (dirs.dir) and fsyncs
// that directory (dirs.d), and returns the bytes written. On any error the
// temporary file is removed and name keeps its previous document.
func writeAtomic(ctx context.Context, root *os.Root, dirs atomicDirs, name string, h hash.Hash, r io.Reader) (n int64, err error) {
	tmp := filepath.Join(dirs.tempDir, tempName(name))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fsFilePerm)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()
	n, err = copyHashed(ctx, f, h, r)
	if err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err // cancelled: keep the previous version
	}
	if err := root.Rename(tmp, filepath.Join(dirs.dir, name)); err != nil {
		return 0, err
	}
	if err := dirs.d.Sync(); err != nil {
		return 0, fmt.Errorf("sync directory %s: %w", dirs.dir, err)
	}
	return n, nil
}
