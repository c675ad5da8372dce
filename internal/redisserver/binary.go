package redisserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ErrNotInstalled is wrapped by FindBinary's error when there is no
// redis-server.
var ErrNotInstalled = errors.New("not found")

// binaryDirs are searched for redis-server after PATH.
var binaryDirs = []string{"/usr/bin"}

// FindBinary returns the path of redis-server: the one on PATH, else the
// one in /usr/bin.
func FindBinary() (string, error) {
	const name = "redis-server"
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for i := len(binaryDirs) - 1; i >= 0; i-- {
		p := filepath.Join(binaryDirs[i], name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("find %s on PATH or in /usr/bin: %w", name, ErrNotInstalled)
}
