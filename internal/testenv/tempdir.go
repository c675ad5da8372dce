package testenv

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// tempRootEnv overrides where server directories are created.
const tempRootEnv = "TESTENV_TMPDIR"

// tempRoot is where server directories go: $TESTENV_TMPDIR when set, else
// /dev/shm when it is a writable directory (a database on tmpfs is created
// about ten times faster than on disk), else os.TempDir().
func tempRoot() string {
	if dir := os.Getenv(tempRootEnv); dir != "" {
		return dir
	}
	const shm = "/dev/shm"
	if st, err := os.Stat(shm); err == nil && st.IsDir() && unix.Access(shm, unix.W_OK) == nil {
		return shm
	}
	return os.TempDir()
}

// makeTempDir creates a temporary directory under root that Main removes; it
// is traversable by other users so that a service user can reach its children.
// Directories that dead test binaries left in root are removed first.
func makeTempDir(root, kind string) (string, error) {
	sweepStaleOnce(root)
	dir, err := os.MkdirTemp(root, tempDirPattern(kind))
	if err != nil {
		return "", fmt.Errorf("create temp dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("chmod temp dir %s: %w", dir, err)
	}
	registerDir(dir)
	return dir, nil
}
