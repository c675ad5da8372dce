// Package gorun ends a program started by `go run` when the go command
// ends: go run does not relay signals to the program it runs
// (golang/go#40467), so a script's `kill $!` of `go run ./cmd/worker -dev &`
// or `go run ./integration/bench &` ended the go command alone, and the
// program went on without it, with the processes it had started.
package gorun

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// pollInterval is how often a program started by `go run` looks whether
// the go command is still its parent.
const pollInterval = 250 * time.Millisecond

// Context returns a context that ends with parent, and also once the go
// command that started this process ends, when the parent is the go
// command (`go run`): its end, however it comes, then stops the program as
// SIGTERM does. ended, when not nil, is called with the go command's
// process id once its end is seen, before the context is cancelled (to
// log it). Another parent (a shell, nohup, a supervisor) is not watched:
// the program outlives it, as before. Call cancel to stop watching.
//
// It watches the parent process id, which changes once the parent is gone
// (the process is re-parented), rather than asking the kernel for a signal
// at the parent's death (PR_SET_PDEATHSIG): that signal comes each time a
// thread of the parent that started the process exits, so the go command's
// exit sent several, and the second ended the program at once, as a second
// Ctrl-C does, before its clean-up.
func Context(parent context.Context, ended func(goPID int)) (ctx context.Context, cancel context.CancelFunc) {
	ctx, cancel = context.WithCancel(parent)
	ppid := os.Getppid()
	if !isGoCommand(ppid) {
		return ctx, cancel
	}
	go func() {
		tick := time.NewTicker(pollInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if os.Getppid() != ppid {
				if ended != nil {
					ended(ppid)
				}
				cancel()
				return
			}
		}
	}()
	return ctx, cancel
}

// isGoCommand reports whether process pid runs the go command.
func isGoCommand(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && filepath.Base(strings.TrimSuffix(exe, " (deleted)")) == "go"
}
