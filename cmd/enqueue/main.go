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
	"github.com/invoicing/tenantworker/internal/stopsignal"
)

func main() {
	// A write to a pipe whose reader has gone fails instead of ending the
	// process: the output of "enqueue tenant move ... 2>&1 | tee move.log"
	// goes to a tee that the same Ctrl-C or hang-up ends first, and the
	// move's next progress line would otherwise kill it (Go ends a process
	// on SIGPIPE from a write to stdout or stderr) before it resumed the
	// tenant's queue, as kill -9 does. Only the lines are lost.
	signal.Ignore(syscall.SIGPIPE)
	// SIGHUP too (the operator's terminal or ssh session went away): a
	// long command such as "tenant move" then stops as after Ctrl-C,
	// releasing what it holds, instead of dying with the tenant's queue
	// held. A hang-up or interrupt the process was started ignoring
	// ("nohup enqueue tenant move ...", a job a script started in the
	// background) stays ignored: catching it would undo what the operator
	// asked for, and the move would stop when the ssh session drops.
	ctx, stop := stopsignal.Context(context.Background(), os.Interrupt, syscall.SIGHUP)
	code := enqueueapp.Main(ctx, os.Args[1:], enqueueapp.IO{
		Stdout:   os.Stdout,
		Stderr:   os.Stderr,
		Getenv:   os.Getenv,
		Terminal: enqueueapp.IsTerminal(os.Stdout),
	})
	stop()
	os.Exit(code)
}
