//go:build !unix

package worker

// openFilesLimit reports no limit of open file descriptors where the
// system has no RLIMIT_NOFILE.
func openFilesLimit() (uint64, bool) { return 0, false }
