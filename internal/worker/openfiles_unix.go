//go:build unix

package worker

import "golang.org/x/sys/unix"

// openFilesLimit returns this process's soft limit of open file
// descriptors (RLIMIT_NOFILE), and whether it could be read.
func openFilesLimit() (uint64, bool) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true
}
