package pgserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRemoveStale(t *testing.T) {
	t.Parallel()
	// A PID that surely has exited: a child we ran and waited for.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := cmd.Process.Pid

	root := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(root, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dead := mk(fmt.Sprintf("pgserver-%d-123", deadPID))
	// This process's own server's directory (registered as Start does), and
	// one an earlier process with the same PID left (a container restarted).
	mine := mk(fmt.Sprintf("pgserver-%d-456", os.Getpid()))
	liveDirs.Store(mine, true)
	defer liveDirs.Delete(mine)
	samePID := mk(fmt.Sprintf("pgserver-%d-457", os.Getpid()))
	parent := mk(fmt.Sprintf("pgserver-%d-789", os.Getppid()))
	other := mk("pgserver-test-abc")
	unrelated := mk("something-else")

	removed := RemoveStale(root)
	slices.Sort(removed)
	want := []string{dead, samePID}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Fatalf("RemoveStale removed %v, want %v", removed, want)
	}
	for _, keep := range []string{mine, parent, other, unrelated} {
		if _, err := os.Stat(keep); err != nil {
			t.Fatalf("%s: %v, want kept", keep, err)
		}
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Fatalf("%s: %v, want removed", dead, err)
	}
}

// TestRemoveStaleRemovesTheKilledServersSharedMemory kills a server as the
// death of its owner does (SIGKILL to its process group) and leaves its
// directory as a killed owner would: PostgreSQL's System V shared memory
// segment, which a stopped server removes, stays, and no later server in
// another directory looks for it. RemoveStale must remove it with the
// directory, or every killed dev stack (kill -9, a closed terminal) leaves
// one behind until the machine restarts.
func TestRemoveStaleRemovesTheKilledServersSharedMemory(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	root := tempRoot(t)
	srv := startServer(t, ctx, Options{TempRoot: root})
	key, id := segmentOf(t, srv.dataDir)
	t.Cleanup(func() { // left by a RemoveStale that failed the test
		var ds unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err == nil && uint32(ds.Perm.Key) == key {
			_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		}
	})
	srv.mu.Lock()
	srv.proc.Kill()
	srv.mu.Unlock()
	// The directory of an owner that has exited: PID 2^22+1 is above
	// Linux's pid_max limit, so no process has it.
	stale := filepath.Join(root, "pgserver-4194305-1")
	if err := os.Rename(srv.Dir(), stale); err != nil {
		t.Fatal(err)
	}
	// Its backends die with the postmaster's process group.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ds unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil || uint32(ds.Perm.Key) != key {
			t.Fatalf("the killed server's segment (key %d, id %d) is gone before RemoveStale (%v): the test shows nothing", key, id, err)
		}
		if ds.Nattch == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %d still attached %d times 30 s after the kill", id, ds.Nattch)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if removed := RemoveStale(root); !slices.Equal(removed, []string{stale}) {
		t.Fatalf("RemoveStale removed %v, want %v", removed, []string{stale})
	}
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err == nil && uint32(ds.Perm.Key) == key {
		t.Fatalf("the killed server's shared memory segment (key %d, id %d, %d bytes) is still there after RemoveStale removed its directory", key, id, ds.Segsz)
	}
}

// segmentOf returns the key and id of the System V shared memory segment
// of the server running in dataDir, from its postmaster.pid.
func segmentOf(t *testing.T, dataDir string) (uint32, int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) < 7 {
		t.Fatalf("postmaster.pid has no shared memory line:\n%s", data)
	}
	var key uint32
	var id int
	if _, err := fmt.Sscan(lines[6], &key, &id); err != nil {
		t.Fatalf("postmaster.pid line 7 %q: %v", lines[6], err)
	}
	return key, id
}

// TestKilledStopLeavesNoSharedMemory stops a server with an ended context,
// which kills it (SIGKILL to its process group): the killed postmaster does
// not remove its System V shared memory segment, and Stop then removes its
// directory, so no RemoveStale could find it later. Stop must remove it.
func TestKilledStopLeavesNoSharedMemory(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv, err := Start(ctx, Options{TempRoot: tempRoot(t)})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	key, id := segmentOf(t, srv.dataDir)
	t.Cleanup(func() { // left by a Stop that failed the test
		var ds unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err == nil && uint32(ds.Perm.Key) == key {
			_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		}
	})
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := srv.Stop(ended); err != nil {
		t.Fatalf("Stop with an ended context: %v", err)
	}
	// A segment marked for removal loses its key at once, and goes once its
	// dying backends have let it go.
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err == nil && uint32(ds.Perm.Key) == key {
		t.Fatalf("the killed server's shared memory segment (key %d, id %d, %d bytes, %d attached) is still there after Stop removed its directory", key, id, ds.Segsz, ds.Nattch)
	}
}
