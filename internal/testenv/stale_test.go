package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestSweepStaleRemovesOnlyDeadOwners(t *testing.T) {
	t.Parallel()

	// A PID that just exited: its directories are stale.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run true: %v", err)
	}
	dead := cmd.Process.Pid

	root := t.TempDir()
	dirs := map[string]bool{ // name -> want kept
		fmt.Sprintf("testenv-postgres-%d-123", dead):        false,
		fmt.Sprintf("testenv-redis-%d-456", dead):           false,
		fmt.Sprintf("testenv-postgres-%d-789", os.Getpid()): true, // this binary
		fmt.Sprintf("testenv-redis-%d-1", os.Getppid()):     true, // a live process
		"testenv-postgres-notapid-1":                        true,
		fmt.Sprintf("other-redis-%d-1", dead):               true,
	}
	for name := range dirs {
		if err := os.MkdirAll(filepath.Join(root, name, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	sweepStale(root)

	for name, wantKept := range dirs {
		_, err := os.Stat(filepath.Join(root, name))
		if kept := err == nil; kept != wantKept {
			t.Errorf("%s: kept = %v, want %v", name, kept, wantKept)
		}
	}
}

func TestOwnerPID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		pid    int
		wantOK bool
	}{
		{name: "testenv-postgres-42-123456", pid: 42, wantOK: true},
		{name: "testenv-bin-7-x", pid: 7, wantOK: true},
		{name: "testenv-postgres-123456", wantOK: false},
		{name: "testenv-redis-0-1", wantOK: false},
		{name: "testenv-redis--1-1", wantOK: false},
		{name: "postgres-42-1", wantOK: false},
	}
	for _, tt := range tests {
		pid, ok := ownerPID(tt.name)
		if ok != tt.wantOK || (ok && pid != tt.pid) {
			t.Errorf("ownerPID(%q) = %d, %v; want %d, %v", tt.name, pid, ok, tt.pid, tt.wantOK)
		}
	}
}
