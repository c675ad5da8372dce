package devstack

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// goRunPollInterval is how often a stack started by `go run` looks whether
// the go command is still its parent.
const goRunPollInterval = 250 * time.Millisecond

// stopWithGoRun returns a context that ends with ctx, and also once the go
// command that started this process ends, when the parent is the go
// command: `go run ./cmd/worker -dev`, the README's first command. go run
// does not relay signals to the program it runs (golang/go#40467), so a
// script's `kill $!` of `go run ./cmd/worker -dev &` (where SIGINT is
// ignored) ended go run alone, and the stack went on without it, holding
// its ports and its PostgreSQL. Its end, however it comes, now stops the
// stack as SIGTERM does. Another parent (a shell, nohup, a supervisor) is
// not watched: the stack outlives it, as before.
//
// It watches the parent process id, which changes once the parent is gone
// (the process is re-parented), rather than asking the kernel for a signal
// at the parent's death (PR_SET_PDEATHSIG): that signal comes each time a
// thread of the parent that started the process exits, so the go command's
// exit sent several, and the second ended the stack at once, as a second
// Ctrl-C does, before its clean-up.
func stopWithGoRun(ctx context.Context, logger *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	ppid := os.Getppid()
	if !isGoCommand(ppid) {
		return ctx, cancel
	}
	go func() {
		tick := time.NewTicker(goRunPollInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if os.Getppid() != ppid {
				logger.Info("go run ended: stopping the dev stack", "go_run_pid", ppid)
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
