package stopsignal

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestContextStopsOnTheFirstSignal: SIGTERM cancels the context.
func TestContextStopsOnTheFirstSignal(t *testing.T) {
	ctx, stop := Context(context.Background(), os.Interrupt)
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not cancel the context")
	}
}

// TestContextLeavesIgnoredSignalsIgnored runs this test binary again with
// SIGINT ignored (as sh starts a background job): the child's context
// stays live after a SIGINT to itself and the child survives it; a child
// started with SIGINT at its default gets its context cancelled.
func TestContextLeavesIgnoredSignalsIgnored(t *testing.T) {
	if os.Getenv("STOPSIGNAL_CHILD") == "1" {
		ctx, stop := Context(context.Background(), os.Interrupt)
		defer stop()
		_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
		select {
		case <-ctx.Done():
			os.Stdout.WriteString("cancelled\n")
		case <-time.After(2 * time.Second):
			os.Stdout.WriteString("live\n")
		}
		return
	}
	for _, c := range []struct {
		trap, want string
	}{
		{"trap '' INT;", "live"},
		{"", "cancelled"},
	} {
		cmd := exec.Command("sh", "-c", c.trap+` exec "$0" -test.run '^TestContextLeavesIgnoredSignalsIgnored$'`, os.Args[0])
		cmd.Env = append(os.Environ(), "STOPSIGNAL_CHILD=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("child (%q): %v\n%s", c.trap, err, out)
		}
		if got := strings.Fields(string(out)); len(got) == 0 || got[0] != c.want {
			t.Errorf("child started with %q: %q after its SIGINT, want %s", c.trap, out, c.want)
		}
	}
}
