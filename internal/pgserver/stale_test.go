package pgserver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
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
