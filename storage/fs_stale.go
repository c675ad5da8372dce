package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// StaleTempAge is how old a temporary file of Put must be before
// RemoveStaleTemp takes it for the leftover of a killed writer. A Put
// lasts at most its task's deadline (minutes); the store is shared by every
// worker and enqueue service, so a younger temporary file may be another
// process's write in progress.
const StaleTempAge = time.Hour

// walkedStamp is the file in the store's root whose presence says that a
// walk of the whole tree found no temporary file left next to a document
// (where releases before the tenants' temporary directories wrote them):
// RemoveStaleTemp then lists only the tenants' temporary directories. No
// tenant id starts with '.', so it is no tenant's directory, and its name
// does not start with tempMarker, so an older release's RemoveStaleTemp
// leaves it alone.
const walkedStamp = ".stale-walked~"

// walkedStampText is what walkedStamp holds, for whoever finds it.
const walkedStampText = "A walk of this document store found no temporary file of a write left next to a document.\n" +
	"Workers now look for the leftovers of killed writers in each tenant's .tmp~ directory only.\n" +
	"Remove this file to have the next worker start walk the whole store again.\n"

// RemoveStaleTemp removes the temporary files of Put (names starting with
// ".put~") last modified before cutoff, and returns how many it removed.
// Put removes its temporary file on every error it sees, but a process
// killed between the temporary file's creation and its rename (kill -9, an
// out-of-memory kill, a power loss) leaves it behind, unreferenced, for
// ever: workers call this at start-up with time.Now().Add(-StaleTempAge).
//
// Put writes its temporary files in the tenant's temporary directory
// (<root>/<tenantID>/.tmp~), so RemoveStaleTemp lists the store's root and
// those directories, not the documents: its cost grows with the number of
// tenants, not of documents. Releases before that wrote them next to the
// document. Until one walk of the whole tree has found none of those left
// (neither stale nor younger than cutoff: such a release's write in
// progress), each call also walks the whole tree, removes the stale ones,
// and then records the clean walk in the root (the file .stale-walked~;
// removing it makes the next call walk the whole tree again).
//
// Documents, directories and younger temporary files are left alone;
// symbolic links are not followed. It stops at ctx's end; a file it cannot
// remove is reported in the error and the rest goes on.
func (s *FS) RemoveStaleTemp(ctx context.Context, cutoff time.Time) (int, error) {
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return 0, fmt.Errorf("remove stale temporary documents: %w", err)
	}
	defer root.Close()
	c := staleCleaner{ctx: ctx, root: root, cutoff: cutoff}
	c.tempDirs()
	if _, err := root.Lstat(walkedStamp); errors.Is(err, fs.ErrNotExist) {
		if c.walk() {
			c.stamp()
		}
	} else if err != nil {
		c.errs = append(c.errs, err)
	}
	if err := errors.Join(c.errs...); err != nil {
		return c.removed, fmt.Errorf("remove stale temporary documents in %s: %w", s.root, err)
	}
	return c.removed, nil
}

// staleCleaner is one RemoveStaleTemp call.
type staleCleaner struct {
	ctx     context.Context
	root    *os.Root
	cutoff  time.Time
	removed int
	errs    []error
}

// remove removes the temporary file p (a path under root) when it was
// last modified before the cutoff, and reports whether it kept p because
// it is younger.
func (c *staleCleaner) remove(p string) (young bool) {
	info, err := c.root.Lstat(p)
	if err != nil || !info.Mode().IsRegular() {
		return false // gone meanwhile: renamed or removed by its writer
	}
	if !info.ModTime().Before(c.cutoff) {
		return true
	}
	if err := c.root.Remove(p); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.errs = append(c.errs, err)
		}
		return false
	}
	c.removed++
	return false
}

// tempDirs removes the stale temporary files of every tenant's temporary
// directory: it reads the root's entries in batches and opens the
// temporary directory of each tenant directory.
func (c *staleCleaner) tempDirs() {
	dir, err := c.root.Open(".")
	if err != nil {
		c.errs = append(c.errs, err)
		return
	}
	defer dir.Close()
	for {
		entries, err := dir.ReadDir(1024)
		for _, e := range entries {
			if err := c.ctx.Err(); err != nil {
				c.errs = append(c.errs, err)
				return
			}
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				c.tempDir(filepath.Join(e.Name(), tempDirName))
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
	}
}

// tempDir removes the stale temporary files in the temporary directory p.
func (c *staleCleaner) tempDir(p string) {
	td, err := openRootDir(c.root, p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return // no write since the tenant's directory was made, or it was deleted meanwhile
	}
	if err != nil {
		c.errs = append(c.errs, err)
		return
	}
	defer td.Close()
	entries, err := td.ReadDir(-1)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.errs = append(c.errs, err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), tempMarker) {
			c.remove(filepath.Join(p, e.Name()))
		}
	}
}

// walk walks the whole tree but the tenants' temporary directories for
// temporary files left next to their documents, removes the stale ones,
// and reports whether it went through without an error and left none.
func (c *staleCleaner) walk() (clean bool) {
	errs := len(c.errs)
	kept := 0
	walkErr := fs.WalkDir(c.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if cerr := c.ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // removed meanwhile (a tenant's deletion)
				c.errs = append(c.errs, err)
			}
			return nil // an unreadable directory is skipped
		}
		if d.IsDir() && d.Name() == tempDirName {
			return fs.SkipDir // listed by tempDirs
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tempMarker) {
			return nil
		}
		if c.remove(filepath.FromSlash(p)) {
			kept++
		}
		return nil
	})
	if walkErr != nil {
		c.errs = append(c.errs, walkErr)
	}
	return len(c.errs) == errs && kept == 0
}

// stamp records in the root that a walk of the whole tree left no
// temporary file next to a document (walkedStamp).
func (c *staleCleaner) stamp() {
	f, err := c.root.OpenFile(walkedStamp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fsFilePerm)
	if err != nil {
		c.errs = append(c.errs, err)
		return
	}
	_, werr := f.WriteString(walkedStampText)
	if err := errors.Join(werr, f.Close()); err != nil {
		c.errs = append(c.errs, err)
	}
}
