package childproc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// defaultStopGrace is Options.StopGrace when zero.
const defaultStopGrace = 5 * time.Second

// Options configures Start. The zero value runs the program in the current
// directory with the parent's environment and user, output discarded,
// stopped with SIGTERM and killed 5 s later.
type Options struct {
	// Dir is the working directory. Empty: the parent's.
	Dir string
	// Env is the environment. Nil: the parent's.
	Env []string
	// LogPath, when set, is the file that stdout and stderr are appended
	// to (created when missing).
	LogPath string
	// Output receives stdout and stderr when LogPath is empty. Nil: they
	// are discarded.
	Output *os.File
	// Credential, when not nil, runs the process as another user.
	Credential *syscall.Credential
	// StopSignal is the gentle signal Stop sends. Zero: SIGTERM.
	StopSignal syscall.Signal
	// StopGrace is how long Stop waits after StopSignal before it kills
	// the process group. Zero: 5 s.
	StopGrace time.Duration
}

// Process is one child process started by Start. Its methods are safe for
// concurrent use.
type Process struct {
	cmd     *exec.Cmd
	opts    Options
	done    chan struct{} // closed once the process has exited
	waitErr error         // valid after done is closed
}

// Start starts bin with args in its own process group, killed when the
// calling process dies, and returns without waiting for it.
func Start(bin string, args []string, opts Options) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = opts.Dir
	cmd.Env = opts.Env
	cmd.SysProcAttr = SysProcAttr(opts.Credential)
	switch {
	case opts.LogPath != "":
		logFile, err := os.OpenFile(opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open log %s: %w", opts.LogPath, err)
		}
		defer logFile.Close() // the child has its own copy of the descriptor
		cmd.Stdout, cmd.Stderr = logFile, logFile
	case opts.Output != nil:
		cmd.Stdout, cmd.Stderr = opts.Output, opts.Output
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &Process{cmd: cmd, opts: opts, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// SysProcAttr puts a child in its own process group, kills it when its
// parent dies, and, when cred is not nil, runs it as another user.
func SysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: cred,
	}
}

// Command returns a command for a short-lived helper program with the same
// process attributes as a server started by Start, killed when ctx ends.
func Command(ctx context.Context, bin string, args []string, dir string, cred *syscall.Credential) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = SysProcAttr(cred)
	return cmd
}

// Pid returns the process id, which is also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns how the process ended (exec.Cmd.Wait's error). It is valid
// once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.waitErr
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends StopSignal to the process group and waits up to StopGrace or
// until ctx ends, then kills the group. It returns once the process has
// exited. Stopping an exited process does nothing.
func (p *Process) Stop(ctx context.Context) error {
	if p.Exited() {
		return nil
	}
	pgid := p.cmd.Process.Pid
	sig := cmp.Or(p.opts.StopSignal, syscall.SIGTERM)
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", pgid, err)
	}
	grace := time.NewTimer(cmp.Or(p.opts.StopGrace, defaultStopGrace))
	defer grace.Stop()
	select {
	case <-p.done:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", pgid, err)
	}
	<-p.done
	return nil
}

// Kill kills the process group at once and waits for the process to exit.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}
