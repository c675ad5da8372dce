package pgserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// tempDirPrefix starts the name of every temporary directory Start creates:
// pgserver-<pid>-<random>.
const tempDirPrefix = "pgserver-"

// tempDirPattern is the os.MkdirTemp pattern for this process.
func tempDirPattern() string {
	return fmt.Sprintf("%s%d-*", tempDirPrefix, os.Getpid())
}

// RemoveStale removes the temporary server directories in root (created by
// Start with Options.Dir empty) whose owner process no longer runs: a
// process killed before Stop leaves its directory behind, while its server
// died with it. It returns the directories removed; failures are skipped.
// Directories of running processes, and anything not named like Start's
// directories, are left alone.
func RemoveStale(root string) []string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		pid, ok := ownerPID(e.Name())
		if !ok || !e.IsDir() || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // alive, or not ours to judge (EPERM)
		}
		dir := filepath.Join(root, e.Name())
		if os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}

// ownerPID parses the PID out of pgserver-<pid>-<random>.
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, tempDirPrefix)
	if !ok {
		return 0, false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}
