package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/invoicing/tenantworker/tenantctx"
)

// ListDocuments returns the keys of the documents directly in the tenant's
// directory dir (a key prefix such as "invoices"), sorted: regular files
// whose names are valid keys, not the subdirectories, not what Put is
// writing (its temporary files are elsewhere) and not a symbolic link. A
// tenant or a dir with no document is an empty list, not an error; the
// root of a store NewFS made missing since (a volume unmounted) is an
// error wrapping fs.ErrNotExist, as DeleteTenant's, not a store that
// holds nothing. dir is
// resolved as Open resolves a document's directory: a link on its way is
// refused (an error wrapping errLink), so a planted link never lists
// another tenant's documents as this one's.
func (s *FS) ListDocuments(ctx context.Context, tenantID, dir string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list documents %q: %w", dir, err)
	}
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return nil, fmt.Errorf("list documents: %w", err)
	}
	if err := ValidateDocumentKey(dir); err != nil {
		return nil, fmt.Errorf("list documents: %w", err)
	}
	rel := filepath.Join(tenantID, filepath.FromSlash(dir))
	d, err := s.openDir(rel)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		if err := s.rootGone(); err != nil {
			return nil, fmt.Errorf("list documents %s of tenant %s: %w", dir, tenantID, err)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list documents %s of tenant %s: %w", dir, tenantID, err)
	}
	defer d.Close()
	var keys []string
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list documents %s of tenant %s: %w", dir, tenantID, err)
		}
		entries, err := d.ReadDir(1024)
		for _, e := range entries {
			key := path.Join(dir, e.Name())
			if e.Type().IsRegular() && ValidateDocumentKey(key) == nil {
				keys = append(keys, key)
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && len(entries) == 0) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list documents %s of tenant %s: %w", dir, tenantID, err)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// openDir opens the directory rel (a path under the root) for reading,
// refusing a symbolic link on its way or in its place.
func (s *FS) openDir(rel string) (*os.File, error) {
	if s.openat2 {
		b, err := openBeneath(s.root)
		if err != nil {
			return nil, err
		}
		defer b.Close()
		beforeUse()
		return b.dir(rel)
	}
	return s.openChecked(rel)
}

// rootGone returns an error wrapping fs.ErrNotExist when the root of a
// store NewFS made is missing, or no longer a directory; nil otherwise,
// and always for a store OpenFS opened, whose root may never have existed.
func (s *FS) rootGone() error {
	if !s.made {
		return nil
	}
	st, err := os.Stat(s.root)
	if err != nil {
		return fmt.Errorf("document store: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("document store %s: not a directory: %w", s.root, fs.ErrNotExist)
	}
	return nil
}
