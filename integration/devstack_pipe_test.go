package integration

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestDevStackWhoseLogPipeIsGoneStopsCleanly: `go run ./cmd/worker -dev
// 2>&1 | tee dev.log` whose tee goes away first (the Ctrl-C or hang-up
// ends it too, or a closed terminal) still stops cleanly on SIGTERM: exit
// 0, its throwaway database removed. The lines it can no longer write are
// lost, not its clean-up: the first one written to the broken pipe killed
// it (SIGPIPE), its throwaway database directory left behind.
func TestDevStackWhoseLogPipeIsGoneStopsCleanly(t *testing.T) {
	t.Parallel()
	bin := testenv.BuildBinary(t, workerPkg)
	dataDir := testenv.SharedTempDir(t, "devstack-test")
	httpAddr := devFreeAddr(t)
	cmd := exec.Command(bin, "-dev", "-http-addr", httpAddr, "-data-dir", dataDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// tee: reads the stack's log until it is ready, then goes away.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = pw
	log := new(testenv.LogBuffer)
	read := make(chan struct{})
	go func() { defer close(read); _, _ = io.Copy(log, pr) }()
	r := launchDev(t, cmd, httpAddr, devReadyTimeout)
	pw.Close() // the stack holds the pipe's only write end
	pr.Close()
	<-read
	if r.info.PGDir == "" {
		t.Fatalf("no throwaway database: %+v", r.info)
	}

	if r.exited() {
		t.Fatalf("worker -dev whose log pipe is gone exited with %v before SIGTERM; want it to go on and stop cleanly on SIGTERM", r.waitErr)
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-r.done:
	case <-time.After(devStopLimit):
		t.Fatalf("worker -dev still running %s after SIGTERM", devStopLimit)
	}
	if r.waitErr != nil {
		t.Errorf("worker -dev whose log pipe is gone exited with %v after SIGTERM; want status 0 after a clean stop", r.waitErr)
	}
	if _, err := os.Stat(r.info.PGDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("throwaway database directory %s after exit: %v, want it removed", r.info.PGDir, err)
	}
}
