package storage

import "testing"

// SetTestHookBeforeUse has hook called between the check (or the
// resolution) of each document's path and the operation on it, until t
// ends. t must not be parallel: the hook is the package's.
func SetTestHookBeforeUse(t testing.TB, hook func()) {
	testHookBeforeUse = hook
	t.Cleanup(func() { testHookBeforeUse = nil })
}

// WithoutOpenat2 returns a store on s's root that works as on a kernel
// without openat2(2): it checks each path for symbolic links before the
// operation on it.
func (s *FS) WithoutOpenat2() *FS { return &FS{root: s.root, made: s.made} }

// SetTestHookSyncDir has hook called with each directory (a path under
// the store's root, "." for the root) the store is about to fsync, until
// t ends. t must not be parallel: the hook is the package's.
func SetTestHookSyncDir(t testing.TB, hook func(dir string)) {
	testHookSyncDir = hook
	t.Cleanup(func() { testHookSyncDir = nil })
}
