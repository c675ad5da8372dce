package storage

import (
	"context"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"syscall"
)

// writeAtomic writes r (hashed into h) to a new temporary file in the
// tenant's temporary directory (dirs.td), fsyncs it, renames it to name in
// the document's directory (dirs.d) and fsyncs that directory, and
// returns the bytes written. On any error the temporary file is removed
// and name keeps its previous document.
//
// On Linux it works on the directories' descriptors with the *at system
// calls: every name it passes is one component in one of them (no path to
// walk, no symbolic link followed: O_NOFOLLOW and O_EXCL for the new
// file, and renameat replaces a planted link itself), so it stays as
// confined as os.Root, with about a dozen system calls per document
// instead of the 35 that os.Root's path walks, descriptor checks and
// reopenings cost.
func writeAtomic(ctx context.Context, _ *os.Root, dirs atomicDirs, name string, h hash.Hash, r io.Reader) (n int64, err error) {
	defer runtime.KeepAlive(dirs.d)
	defer runtime.KeepAlive(dirs.td)
	dfd, tfd := int(dirs.d.Fd()), int(dirs.td.Fd())
	tmp := tempName(name)
	fd, err := ignoringEINTR2(func() (int, error) {
		return syscall.Openat(tfd, tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, fsFilePerm)
	})
	if err != nil {
		return 0, &os.PathError{Op: "openat", Path: tmp, Err: err}
	}
	open := true
	defer func() {
		if err != nil {
			if open {
				_ = syscall.Close(fd)
			}
			_ = syscall.Unlinkat(tfd, tmp)
		}
	}()
	n, err = copyHashed(ctx, fdWriter(fd), h, r)
	if err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	if err := ignoringEINTR(func() error { return syscall.Fsync(fd) }); err != nil {
		return 0, &os.PathError{Op: "fsync", Path: tmp, Err: err}
	}
	open = false
	if err := syscall.Close(fd); err != nil {
		return 0, &os.PathError{Op: "close", Path: tmp, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return 0, err // cancelled: keep the previous version
	}
	if err := syscall.Renameat(tfd, tmp, dfd, name); err != nil {
		return 0, &os.LinkError{Op: "renameat", Old: tmp, New: name, Err: err}
	}
	if err := ignoringEINTR(func() error { return syscall.Fsync(dfd) }); err != nil {
		return 0, fmt.Errorf("sync directory: %w", err)
	}
	return n, nil
}

// fdWriter writes to a file descriptor, retrying short writes.
type fdWriter int

func (fd fdWriter) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		n, err := syscall.Write(int(fd), p[written:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return written, &os.PathError{Op: "write", Path: "document", Err: err}
		}
		if n == 0 {
			return written, io.ErrShortWrite
		}
		written += n
	}
	return written, nil
}

// ignoringEINTR runs fn again while it fails with EINTR.
func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != syscall.EINTR {
			return err
		}
	}
}

// ignoringEINTR2 is ignoringEINTR for a call that returns a value.
func ignoringEINTR2(fn func() (int, error)) (int, error) {
	for {
		v, err := fn()
		if err != syscall.EINTR {
			return v, err
		}
	}
}
