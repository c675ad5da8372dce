package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// dirPrefix starts the name of every directory this package creates.
const dirPrefix = "testenv-"

// tempDirPattern is the os.MkdirTemp pattern for kind ("postgres", "redis",
// "bin"): testenv-<kind>-<pid>-*, so that sweepStale can tell whose it is.
func tempDirPattern(kind string) string {
	return fmt.Sprintf("%s%s-%d-*", dirPrefix, kind, os.Getpid())
}

// swept records the roots already swept by this test binary.
var swept struct {
	mu    sync.Mutex
	roots map[string]bool
}

// sweepStaleOnce runs sweepStale for root the first time root is used.
func sweepStaleOnce(root string) {
	swept.mu.Lock()
	defer swept.mu.Unlock()
	if swept.roots[root] {
		return
	}
	if swept.roots == nil {
		swept.roots = make(map[string]bool)
	}
	swept.roots[root] = true
	sweepStale(root)
}

// sweepStale removes directories that test binaries which are no longer
// running left in root: a binary that panics, times out or is killed never
// reaches Main's cleanup. Its servers died with it (parent-death signal), but
// on tmpfs its data directories would hold memory until reboot. Failures are
// ignored; sweeping is best effort.
func sweepStale(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, ok := ownerPID(e.Name())
		if !ok || !e.IsDir() || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// ownerPID parses the PID out of testenv-<kind>-<pid>-<random>.
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, dirPrefix)
	if !ok {
		return 0, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) != 3 {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[1])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}
