package pgserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// tempDirPrefix starts the name of every temporary directory Start creates:
// pgserver-<pid>-<random>.
const tempDirPrefix = "pgserver-"

// tempDirPattern is the os.MkdirTemp pattern for this process.
func tempDirPattern() string {
	return fmt.Sprintf("%s%d-*", tempDirPrefix, os.Getpid())
}

// liveDirs holds the temporary directories of this process's servers, from
// Start until Stop removes them: a directory named with this process's PID
// and not in liveDirs was left by an earlier process that had the same PID
// (a container's process gets the same PID at every start).
// liveMu makes creating and registering a directory one step for
// RemoveStale, which must not take a directory between the two.
var (
	liveDirs sync.Map
	liveMu   sync.Mutex
)

// RemoveStale removes the temporary server directories in root (created by
// Start with Options.Dir empty) whose owner process no longer runs: a
// process killed before Stop leaves its directory behind, while its server
// died with it, leaving its System V shared memory segment too, which goes
// with the directory. It returns the directories removed; failures are
// skipped.
// Directories of other running processes and of this process's own
// servers, and anything not named like Start's directories, are left alone.
func RemoveStale(root string) []string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		pid, ok := ownerPID(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if pid == os.Getpid() {
			if removeUnlessLive(dir) {
				removed = append(removed, dir)
			}
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // alive, or not ours to judge (EPERM)
		}
		if removeStaleDir(dir) {
			removed = append(removed, dir)
		}
	}
	return removed
}

// removeUnlessLive removes dir, named with this process's PID, unless one
// of this process's servers uses it, and reports whether it removed it.
func removeUnlessLive(dir string) bool {
	liveMu.Lock()
	defer liveMu.Unlock()
	if _, live := liveDirs.Load(dir); live {
		return false
	}
	return removeStaleDir(dir)
}

// removeStaleDir removes dir, a directory whose server is gone, with the
// shared memory segment that server left, and reports whether it removed
// the directory.
func removeStaleDir(dir string) bool {
	removeLeftSegment(filepath.Join(dir, "data"))
	return os.RemoveAll(dir) == nil
}

// removeLeftSegment removes the System V shared memory segment that the
// killed server of dataDir left. A server that stops removes it, and its
// postmaster.pid, but a killed one (SIGKILL: with its owner, by the
// parent-death signal of Start's servers; a stop past its grace or its
// ctx; a start cut short) leaves both, and no later server looks for the
// segment, each starting in a directory of its own: it stayed until the
// machine restarted. postmaster.pid holds the postmaster's PID (first line)
// and the segment's key and id (seventh line); the segment is removed only
// while it still has that key, was created by that postmaster, and that
// postmaster no longer runs (one still attached by backends dying with it
// goes once they have let it go). Failures are skipped.
func removeLeftSegment(dataDir string) {
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) < 7 {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return
	}
	fields := strings.Fields(lines[6])
	if len(fields) != 2 {
		return
	}
	key, err := strconv.ParseUint(fields[0], 10, 32)
	if err != nil {
		return
	}
	id, err := strconv.Atoi(fields[1])
	if err != nil {
		return
	}
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		return
	}
	if uint32(ds.Perm.Key) != uint32(key) || int(ds.Cpid) != pid {
		return
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		return // the postmaster runs
	}
	_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
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
