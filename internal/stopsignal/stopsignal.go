// Package stopsignal gives the binaries the context their shutdown starts
// from: cancelled by the first SIGTERM, or by one of the other signals a
// binary asks for unless the process was started ignoring it.
package stopsignal

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Context returns a context cancelled when the process receives SIGTERM or
// one of also (os.Interrupt, syscall.SIGHUP). A signal of also that the
// process was started ignoring stays ignored: a shell script's background
// job or a command run under nohup was asked not to stop on it, and
// catching it would undo that. After the first signal the handlers are
// unregistered, so a second one ends the process at once (the default
// action). Call stop to release the handlers early.
func Context(parent context.Context, also ...os.Signal) (ctx context.Context, stop context.CancelFunc) {
	sigs := []os.Signal{syscall.SIGTERM}
	for _, sig := range also {
		if !signal.Ignored(sig) {
			sigs = append(sigs, sig)
		}
	}
	ctx, stop = signal.NotifyContext(parent, sigs...)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}
