package enqueueapp_test

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestTenantMoveWhoseOutputPipeIsGoneStopsCleanly: a move whose stderr is
// a pipe (`enqueue tenant move ... 2>&1 | tee move.log`) whose reader has
// gone (the Ctrl-C or the hang-up that stops the move ends tee first)
// still stops as a failure there does: its queue resumed, exit 1. The
// lines it can no longer write are lost, not the move's clean-up: the
// first one written to the broken pipe killed the process (SIGPIPE, which
// Go gives a write to fd 2 whose reader is gone), with the tenant's queue
// held by the move, as after kill -9.
func TestTenantMoveWhoseOutputPipeIsGoneStopsCleanly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tn := f.movable(t, "acme")
	f.runningTask(t, tn)

	bin := testenv.BuildBinary(t, "github.com/invoicing/tenantworker/cmd/enqueue")
	cmd := exec.Command(bin, "tenant", "move", "acme", "--to", "eu2")
	for k, v := range f.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// tee: reads the move's output until the move waits for the running
	// render, then goes away.
	_, exited := testenv.StartWithTeeGone(t, cmd, false, "wait for 1 running tasks", 30*time.Second)
	// The hang-up stops the move, which writes its steps to the broken
	// pipe.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-exited:
		exited <- err // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("tenant move still running 30 s after the hang-up")
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("the move ended with %v; want exit status 1 (stopped as a failure), not killed by SIGPIPE", err)
	}
	st, err := f.deps.Tenancy.Queue(context.Background(), tn.ID)
	if err != nil || st.Paused {
		t.Fatalf("after the move stopped the tenant's queue is still held: %+v, %v", st, err)
	}
	if got, err := f.deps.Postgres.TenantByID(context.Background(), tn.ID); err != nil || got.DatabaseName() != "main" {
		t.Fatalf("tenant after the stopped move: on %q, %v; want main", got.DatabaseName(), err)
	}
}
