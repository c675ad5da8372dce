package testenv

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// CountCommands is a go-redis hook counting the commands a client sends,
// alone or in a pipeline (a pipeline of n commands counts n), including
// those a new connection sends to set itself up (HELLO, CLIENT SETINFO):
// compare counts taken around the calls to check. Its zero value counts
// from zero, and it is safe for concurrent use:
//
//	sent := &testenv.CountCommands{}
//	rdb.AddHook(sent)
//	before := sent.Sent()
//	...
//	if n := sent.Sent() - before; n != 0 { ... }
type CountCommands struct{ n atomic.Int64 }

// Sent is the number of commands sent so far.
func (c *CountCommands) Sent() int64 { return c.n.Load() }

// DialHook lets dials through.
func (c *CountCommands) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook counts one command.
func (c *CountCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook counts every command of a pipeline.
func (c *CountCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}
