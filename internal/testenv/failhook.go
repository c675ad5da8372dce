package testenv

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ErrInjected is the error a FailCommands hook fails a command with.
var ErrInjected = errors.New("injected: redis refused the command")

// FailCommands is a go-redis hook that fails the commands it is told to
// (Set: lower-case names such as "evalsha", "publish") with ErrInjected,
// alone or in a pipeline, as a Redis that refuses them would; the others
// go through. Its zero value fails nothing, and it is safe for concurrent
// use.
type FailCommands struct {
	mu    sync.Mutex
	names map[string]bool
}

// Set makes the hook fail the named commands from now on, and only them;
// no names: none.
func (f *FailCommands) Set(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.names = map[string]bool{}
	for _, n := range names {
		f.names[n] = true
	}
}

func (f *FailCommands) fails(cmd redis.Cmder) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.names[strings.ToLower(cmd.Name())]
}

// DialHook lets dials through.
func (f *FailCommands) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook fails a command that is set.
func (f *FailCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if f.fails(cmd) {
			cmd.SetErr(ErrInjected)
			return ErrInjected
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook fails a pipeline holding a command that is set.
func (f *FailCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if f.fails(cmd) {
				cmd.SetErr(ErrInjected)
				return ErrInjected
			}
		}
		return next(ctx, cmds)
	}
}
