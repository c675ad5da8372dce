package pgserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// stopGrace is how long postgres gets to shut down after SIGINT before its
// process group is killed.
const stopGrace = 5 * time.Second

// process is one postgres process that a Server started and owns. It runs in
// its own process group and dies with its parent (Pdeathsig).
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	waitErr error         // valid after done is closed
}

// startProcess starts bin with args in dir, stdout and stderr appended to
// logPath. cred, when not nil, runs the process as another user.
func startProcess(bin string, args []string, dir, logPath string, cred *syscall.Credential) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", logPath, err)
	}
	defer logFile.Close() // the child has its own copy of the descriptor

	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr(cred)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// sysProcAttr puts a child in its own process group, kills it when its
// parent dies, and optionally switches its user.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: cred,
	}
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGINT (PostgreSQL's fast shutdown) to the process group and
// waits up to stopGrace or until ctx ends, then kills the group. It returns
// once the process has exited.
func (p *process) stop(ctx context.Context) error {
	if p.exited() {
		return nil
	}
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", pgid, err)
	}
	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	select {
	case <-p.done:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	p.kill()
	return nil
}

// kill kills the process group at once and waits for the process to exit.
func (p *process) kill() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// newCommand returns a command for a short-lived helper program (initdb)
// with the same process attributes as the server, killed when ctx ends.
func newCommand(ctx context.Context, bin string, args []string, dir string, cred *syscall.Credential) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = sysProcAttr(cred)
	return cmd
}
