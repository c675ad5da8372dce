// Command enqueue is the HTTP enqueue service of the tenant-aware job
// worker and its operator CLI: "enqueue serve" (the default), "enqueue
// migrate --all [--wait]", "enqueue pdf --tenant SLUG --invoice ID",
// "enqueue db ...", "enqueue tenant ...", "enqueue queues" and "enqueue
// dispatch-mode". Run "enqueue help" for details. The logic lives in internal/enqueueapp.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
)

func main() {
	// SIGHUP too (the operator's terminal or ssh session went away): a
	// long command such as "tenant move" then stops as after Ctrl-C,
	// releasing what it holds, instead of dying with the tenant's queue
	// held. A hang-up or interrupt the process was started ignoring
	// ("nohup enqueue tenant move ...", a job a script started in the
	// background) stays ignored: catching it would undo what the operator
	// asked for, and the move would stop when the ssh session drops.
	sigs := []os.Signal{syscall.SIGTERM}
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGHUP} {
		if !signal.Ignored(sig) {
			sigs = append(sigs, sig)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	// The first signal starts the shutdown; a second one ends the process
	// at once (the default action, once stop unregisters the handler).
	context.AfterFunc(ctx, stop)
	code := enqueueapp.Main(ctx, os.Args[1:], enqueueapp.IO{
		Stdout:   os.Stdout,
		Stderr:   os.Stderr,
		Getenv:   os.Getenv,
		Terminal: enqueueapp.IsTerminal(os.Stdout),
	})
	stop()
	os.Exit(code)
}
