package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/invoicing/tenantworker/fair"
)

// ErrLastAttemptKept wraps ErrTenantNotReady and asynq.RevokeTask for a
// task that met a not-ready wait on its last allowed attempt and that
// KeepLastAttempt put back into asynq's retry set itself, to make that
// attempt again: asynq lets this one go (RevokeTask: neither retried nor
// archived by asynq).
var ErrLastAttemptKept = fmt.Errorf("last attempt kept for a later retry: %w: %w", ErrTenantNotReady, asynq.RevokeTask)

// Bounds of the delay before a kept last attempt (KeepLastAttempt) comes
// back. It is at least one and a half asynq leases (30 s): asynq sends the
// end of this attempt (a Done that finds the task gone) again until the
// attempt's lease runs out, and such a call would delete a new run of the
// task taken by a worker in between (as for a parked task, see fair).
const (
	lastAttemptKeepMin = 45 * time.Second
	lastAttemptKeepMax = 60 * time.Second
)

// keepLastScript moves an active task back into asynq's retry set: KEYS are asynq:{q}:active, asynq:{q}:lease,
// asynq:{q}:t:<id> and asynq:{q}:retry (one hash slot); ARGV are the task
// id, the protobuf fields appended to its message (a later field wins:
// the wait as its last error, a blank run header)
// and the retry time (Unix seconds). It returns 0, changing nothing, when
// asynq does not hold the task as active (its lease lost and the task
// recovered).
var keepLastScript = redis.NewScript(`
if redis.call("HGET", KEYS[3], "state") ~= "active" then
  return 0
end
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then
  return 0
end
redis.call("ZREM", KEYS[2], ARGV[1])
local msg = redis.call("HGET", KEYS[3], "msg")
redis.call("HSET", KEYS[3], "msg", msg .. ARGV[2], "state", "retry")
redis.call("ZADD", KEYS[4], ARGV[3], ARGV[1])
return 1
`)

// KeepLastAttempt keeps a task that a not-ready wait (ErrTenantNotReady: a
// provisioning tenant, a suspended tenant the fair dispatcher does not
// park or without fair dispatch, a destroy of a tenant not marked
// deleting, a lifecycle step not ready yet) meets on its last allowed
// attempt. asynq v0.26 archives a task that fails on its last attempt
// whatever the error, so such a task would be archived without having
// run. Instead, in one script on asynq's keys, the task goes back into
// asynq's retry set with its retry count as it was (the wait did not count
// as a failure: the attempt it was denied comes back, still its last, and
// a wait met again keeps it again), and the attempt ends with ErrLastAttemptKept
// (asynq lets it go). It comes back 45 to 60 s later as a retry, like any
// waiting task (with fair dispatch through the gate, under its tenant's
// running cap; a drain discards it from the retry set). When the script
// cannot keep it (Redis failed, or asynq no longer holds it as active),
// the attempt ends with the wait as before and asynq archives it. A nil
// rdb keeps nothing.
func KeepLastAttempt(rdb redis.UniversalClient) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		if rdb == nil {
			return next
		}
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			err := next.ProcessTask(ctx, t)
			if err == nil || !errors.Is(err, ErrTenantNotReady) || errors.Is(err, asynq.RevokeTask) || !lastAttempt(ctx) || ctx.Err() != nil {
				return err
			}
			if kerr := keepLast(ctx, rdb, err); kerr != nil {
				LoggerFromContext(ctx).WarnContext(ctx, "could not keep a waiting task on its last attempt; asynq archives it", slog.String("error", kerr.Error()))
				return err
			}
			LoggerFromContext(ctx).InfoContext(ctx, "waiting task kept on its last attempt: back in asynq's retry set", slog.String("reason", err.Error()))
			return fmt.Errorf("%w: %w", err, ErrLastAttemptKept)
		})
	}
}

// keepLast runs keepLastScript for the task of ctx, which waits with err.
func keepLast(ctx context.Context, rdb redis.UniversalClient, err error) error {
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	reason := err.Error()
	field := protowire.AppendTag(nil, 7, protowire.BytesType) // TaskMessage.error_msg
	field = protowire.AppendString(field, reason)
	// Its run is over (ReportCost ends it): a blank run header makes the
	// worker that takes it again ask the fair dispatcher's gate, as for
	// any retry (TaskMessage.headers, a map: a later entry wins).
	entry := protowire.AppendTag(nil, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, fair.RunHeader)
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendString(entry, "")
	field = protowire.AppendTag(field, 15, protowire.BytesType)
	field = protowire.AppendBytes(field, entry)
	at := time.Now().Add(lastAttemptKeepMin + rand.N(lastAttemptKeepMax-lastAttemptKeepMin))
	p := "asynq:{" + queue + "}:"
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recheckTimeout)
	defer cancel()
	n, rerr := keepLastScript.Run(rctx, rdb, []string{p + "active", p + "lease", p + "t:" + id, p + "retry"},
		id, field, strconv.FormatInt(at.Unix(), 10)).Int()
	if rerr != nil {
		return fmt.Errorf("put task %s back into the retry set of queue %s: %w", id, queue, rerr)
	}
	if n == 0 {
		return fmt.Errorf("task %s is no longer active in queue %s", id, queue)
	}
	return nil
}

// lastAttempt reports whether the task of ctx runs its last allowed
// attempt: one asynq archives if it fails, with any error, not-ready ones
// included (false outside an asynq server).
func lastAttempt(ctx context.Context) bool {
	retried, ok := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return ok && ok2 && retried >= maxRetry
}
