package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// beneath resolves paths under the store's root with openat2(2) (Linux
// 5.6 and later): each path is resolved in one system call that fails
// with ELOOP on a symbolic link anywhere on it (RESOLVE_NO_SYMLINKS,
// RESOLVE_NO_MAGICLINKS) and cannot leave the root (RESOLVE_BENEATH).
// What it opens is then used through its descriptor (openat with
// O_NOFOLLOW, fstatat, unlinkat, renameat, mkdirat, fsync), so a
// directory swapped for a link after the resolution changes nothing:
// there is no window between a check for links and the operation, as
// there is with refuseLinks.
type beneath struct {
	root int // the store's root, opened for reading (fsync)
}

// resolveNoLinks is how beneath resolves every path.
const resolveNoLinks = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// openat2Available reports whether the kernel has openat2(2): not before
// Linux 5.6, and a seccomp filter that does not know it refuses it too
// (ENOSYS, or EPERM from older container runtimes' filters).
var openat2Available = sync.OnceValue(func() bool {
	fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveNoLinks})
	if err == nil {
		_ = unix.Close(fd)
	}
	return !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM)
})

// openBeneath opens the store's root (following links on the way to it:
// the root is the operator's to place).
func openBeneath(root string) (beneath, error) {
	fd, err := ignoringEINTR2(func() (int, error) {
		return unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return beneath{}, &os.PathError{Op: "open", Path: root, Err: err}
	}
	return beneath{root: fd}, nil
}

// Close closes the root.
func (b beneath) Close() error { return unix.Close(b.root) }

// dir opens the directory rel (a path under the root) without following
// any link. Its errors wrap errLink for a link on the path, and
// fs.ErrNotExist or syscall.ENOTDIR for a path that is not there.
func (b beneath) dir(rel string) (*os.File, error) { return openDirAt(b.root, rel) }

// makeDir opens the directory rel as dir does, and when it is missing
// creates it and the missing directories on its way, each with mkdirat in
// the one opened before it. When durable, what it creates is made durable
// as makeDirs makes it: each new directory and the one holding it are
// fsynced.
func (b beneath) makeDir(rel string, durable bool) (*os.File, error) {
	d, err := b.dir(rel)
	if !errors.Is(err, fs.ErrNotExist) {
		return d, err
	}
	parent, created := b.root, false
	for name := range strings.SplitSeq(rel, string(filepath.Separator)) {
		next, err := openDirAt(parent, name)
		if errors.Is(err, fs.ErrNotExist) {
			// EEXIST: another writer made it, maybe not durable yet.
			if err := unix.Mkdirat(parent, name, fsDirPerm); err != nil && !errors.Is(err, unix.EEXIST) {
				err = &os.PathError{Op: "mkdirat", Path: name, Err: err}
				return nil, errors.Join(err, closeFile(d))
			}
			if durable {
				if err := fsyncFd(parent); err != nil {
					return nil, errors.Join(err, closeFile(d))
				}
			}
			next, err = openDirAt(parent, name)
			created = true
		} else {
			created = false
		}
		if cerr := closeFile(d); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, errors.Join(err, closeFile(next))
		}
		d, parent = next, int(next.Fd())
	}
	if created && durable {
		if err := d.Sync(); err != nil {
			_ = d.Close()
			return nil, fmt.Errorf("sync directory %s: %w", rel, err)
		}
	}
	return d, nil
}

// openDocAt opens the document name in the directory d for reading,
// refusing a link (errLink). It opens without blocking (O_NONBLOCK, which
// changes nothing for a regular file): a FIFO planted in a document's
// place would otherwise hold the open until a writer came, and the
// caller refuses what is not a regular file.
func openDocAt(d *os.File, name string) (*os.File, error) {
	fd, err := ignoringEINTR2(func() (int, error) {
		return unix.Openat(int(d.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	})
	if err != nil {
		return nil, resolveError("openat", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// removeDocAt removes the document name from the directory d: it returns
// errNotDocument for anything but a regular file, and nothing for a
// missing one.
func removeDocAt(d *os.File, name string) error {
	var st unix.Stat_t
	err := ignoringEINTR(func() error { return unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	if err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return errNotDocument
	}
	if err == nil {
		err = unix.Unlinkat(int(d.Fd()), name, 0)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	return nil
}

// openDirAt opens the directory rel under the directory dirfd with
// openat2, following no link.
func openDirAt(dirfd int, rel string) (*os.File, error) {
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveNoLinks}
	for {
		fd, err := unix.Openat2(dirfd, rel, &how)
		// EAGAIN: a rename raced a ".." component, which these paths do
		// not have; the kernel asks to try again.
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return nil, resolveError("openat2", rel, err)
		}
		return os.NewFile(uintptr(fd), rel), nil
	}
}

// resolveError is the error of a failed open of p: one wrapping errLink
// for a symbolic link (ELOOP), else the *os.PathError.
func resolveError(op, p string, err error) error {
	if errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("%s: %w", p, errLink)
	}
	return &os.PathError{Op: op, Path: p, Err: err}
}

// fsyncFd fsyncs a directory's descriptor, making a new entry in it
// durable.
func fsyncFd(fd int) error {
	if err := ignoringEINTR(func() error { return unix.Fsync(fd) }); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// closeFile closes f, if any.
func closeFile(f *os.File) error {
	if f == nil {
		return nil
	}
	return f.Close()
}
