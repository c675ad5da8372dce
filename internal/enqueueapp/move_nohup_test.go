package enqueueapp_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestTenantMoveUnderNohupSurvivesAHangup: an operator who starts a long
// move with `nohup` (SIGHUP ignored) so that it outlives the ssh session
// gets that: the hang-up when the session drops is ignored, as nohup asks,
// and the move completes. Only a move whose hang-up is not ignored stops
// as after Ctrl-C (TestTenantMoveHangup).
func TestTenantMoveUnderNohupSurvivesAHangup(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tn := f.movable(t, "acme")
	finish := f.runningTask(t, tn)

	bin := testenv.BuildBinary(t, "github.com/invoicing/tenantworker/cmd/enqueue")
	// As nohup does: SIGHUP ignored, which the exec'd process inherits.
	cmd := exec.Command("sh", "-c", `trap '' HUP; exec "$0" "$@"`, bin, "tenant", "move", "acme", "--to", "eu2", "--grace", "10ms")
	for k, v := range f.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout bytes.Buffer
	stderr := new(testenv.LogBuffer)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	testenv.WaitFor(t, 30*time.Second, "the move waits for the running task", func() bool {
		return strings.Contains(stderr.String(), "wait for 1 running tasks")
	})
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The render ends after the hang-up: the move goes on to the end.
	finish()
	var err error
	select {
	case err = <-exited:
		exited <- err // for the cleanup
	case <-time.After(60 * time.Second):
		t.Fatalf("tenant move still running 60 s after the render ended; stderr:\n%s", stderr.String())
	}
	if err != nil || !strings.Contains(stdout.String(), `"to":"eu2"`) {
		t.Fatalf("a move started with SIGHUP ignored stopped at the hang-up: %v\nstdout %q\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if got, err := f.deps.Postgres.TenantByID(context.Background(), tn.ID); err != nil || got.DatabaseName() != "eu2" {
		t.Fatalf("tenant after the move: on %q, %v; want eu2", got.DatabaseName(), err)
	}
}
