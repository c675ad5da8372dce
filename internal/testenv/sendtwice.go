package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// ErrReplyLost is what a SendTwice hook with Lose set answers instead of a
// script's reply: a read that timed out after the command went out.
var ErrReplyLost = fmt.Errorf("read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout: %w", os.ErrDeadlineExceeded)

// SendTwice is a go-redis hook that runs a Lua script call (EVALSHA or
// EVAL) twice in Redis and gives the caller the second run's reply, as
// go-redis does itself when the reply does not come in time after the
// command went out (a read timeout) or the connection drops: it sends the
// command again. With Lose, it runs the call once and loses its reply
// instead (the caller gets ErrReplyLost). Its zero value does that to
// every script call; it is safe for concurrent use once added.
type SendTwice struct {
	// Match picks the calls, by their arguments (the command's name,
	// the script's hash or source, the number of keys, the keys, then
	// ARGV); nil: every script call.
	Match func(args []any) bool
	// Once: only the first matching call that ran is sent twice (or
	// loses its reply); later ones go through.
	Once bool
	// Before runs before the first matching call is sent, Between after
	// its first run and before its second (or before the lost reply is
	// answered); either may be nil.
	Before, Between func()
	// Lose loses the reply instead of sending the call again.
	Lose bool

	began, fired atomic.Bool
	runs         atomic.Int64
}

// Fired reports whether a call was sent twice (or lost its reply).
func (h *SendTwice) Fired() bool { return h.fired.Load() }

// Runs is how many matching calls ran before being sent again (or losing
// their reply).
func (h *SendTwice) Runs() int64 { return h.runs.Load() }

// DialHook lets dials through.
func (h *SendTwice) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook lets pipelines through.
func (h *SendTwice) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook sends a matching script call twice, or loses its reply.
func (h *SendTwice) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := strings.ToLower(cmd.Name())
		if (name != "evalsha" && name != "eval") || (h.Once && h.fired.Load()) || (h.Match != nil && !h.Match(cmd.Args())) {
			return next(ctx, cmd)
		}
		if h.Before != nil && h.began.CompareAndSwap(false, true) {
			h.Before()
		}
		// An EVALSHA of a script Redis does not know yet fails
		// (NOSCRIPT) and go-redis sends it as EVAL next: that one counts.
		if err := next(ctx, cmd); err != nil {
			return err
		}
		if h.Once && !h.fired.CompareAndSwap(false, true) {
			return nil
		}
		h.fired.Store(true)
		h.runs.Add(1)
		if h.Between != nil {
			h.Between()
		}
		if h.Lose {
			cmd.SetErr(ErrReplyLost)
			return ErrReplyLost
		}
		return next(ctx, cmd)
	}
}
