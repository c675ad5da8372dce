package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// StartWithTeeGone starts cmd with its standard error, and its standard
// output when withStdout, on a pipe that a reader of the test's, standing
// for `| tee log`, reads until the output contains until and then closes,
// as a tee that the same Ctrl-C or hang-up ended first: cmd's later writes
// there fail, or kill it when it does not ignore SIGPIPE. The test fails
// when until does not come within timeout or cmd ends before it. It
// returns what the reader read and a channel that receives cmd.Wait's
// result once: a test that receives it sends it back, for the cleanup,
// which kills cmd if it still runs and waits for it.
func StartWithTeeGone(t *testing.T, cmd *exec.Cmd, withStdout bool, until string, timeout time.Duration) (*LogBuffer, chan error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	if withStdout {
		cmd.Stdout = w
	}
	if err := cmd.Start(); err != nil {
		_, _ = r.Close(), w.Close()
		t.Fatal(err)
	}
	w.Close() // cmd holds the pipe's only write end
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	out := new(LogBuffer)
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		defer r.Close()
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			_, _ = out.Write(buf[:n])
			if err != nil || strings.Contains(out.String(), until) {
				return
			}
		}
	}()
	select {
	case <-gone:
	case <-time.After(timeout):
		t.Fatalf("%s: no %q in its output within %s; output:\n%s", cmd.Path, until, timeout, out.String())
	}
	if !strings.Contains(out.String(), until) {
		t.Fatalf("%s ended before %q in its output; output:\n%s", cmd.Path, until, out.String())
	}
	return out, exited
}
