package testenv

import (
	"os"
	"syscall"
	"testing"
)

// ReadOnlyDir returns an empty directory that the test's process cannot
// write, removed (unmounted) when the test ends. As root, whom permission
// bits do not stop, it is a tmpfs mounted read-only (writes fail with
// EROFS, "read-only file system", as on a volume mounted read-only); a
// mount that is not allowed fails the test with the reason. Otherwise it
// is a directory of mode 0555 (writes fail with EACCES).
func ReadOnlyDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
		return dir
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV, "size=64k"); err != nil {
		t.Fatalf("cannot mount a read-only tmpfs (the test needs CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}
