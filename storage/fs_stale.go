package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// StaleTempAge is how old a temporary file of Put must be before
// RemoveStaleTemp takes it for the leftover of a killed writer. A Put
// lasts at most its task's deadline (minutes); the store is shared by every
// worker and enqueue service, so a younger temporary file may be another
// process's write in progress.
const StaleTempAge = time.Hour

// RemoveStaleTemp removes the temporary files of Put (names starting with
// ".put~") last modified before cutoff, anywhere under the store's root,
// and returns how many it removed. Put removes its temporary file on every
// error it sees, but a process killed between the temporary file's
// creation and its rename (kill -9, an out-of-memory kill, a power loss)
// leaves it behind, unreferenced, for ever: workers call this at start-up
// with time.Now().Add(-StaleTempAge). Documents, directories and younger
// temporary files are left alone; symbolic links are not followed. It
// stops at ctx's end; a file it cannot remove is reported in the error
// and the walk goes on.
func (s *FS) RemoveStaleTemp(ctx context.Context, cutoff time.Time) (int, error) {
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return 0, fmt.Errorf("remove stale temporary documents: %w", err)
	}
	defer root.Close()
	var removed int
	var errs []error
	walkErr := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // removed meanwhile (a tenant's deletion)
				errs = append(errs, err)
			}
			return nil // an unreadable directory is skipped
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tempMarker) {
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			return nil // gone meanwhile (renamed or removed by its writer), or young
		}
		if err := root.Remove(filepath.FromSlash(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			return nil
		}
		removed++
		return nil
	})
	if walkErr != nil {
		errs = append(errs, walkErr)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("remove stale temporary documents in %s: %w", s.root, err)
	}
	return removed, nil
}
