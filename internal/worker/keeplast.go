package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
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
// id, its message as read before (keptMessage), the message to write
// instead (the wait as its last error, a blank run header) and the retry
// time (Unix seconds). It returns 0, changing nothing, when asynq does not
// hold the task as active (its lease lost and the task recovered), and -1
// when its message changed since it was read.
var keepLastScript = redis.NewScript(`
if redis.call("HGET", KEYS[3], "state") ~= "active" then
  return 0
end
if redis.call("HGET", KEYS[3], "msg") ~= ARGV[2] then
  return -1
end
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then
  return 0
end
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("HSET", KEYS[3], "msg", ARGV[3], "state", "retry")
redis.call("ZADD", KEYS[4], ARGV[4], ARGV[1])
return 1
`)

// keepAttempts bounds how often keepLast reads the task's message again
// when it changed between its read and the script.
const keepAttempts = 3

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
// the attempt ends with the wait as before and asynq archives it. A script
// whose reply did not come (a timeout, a dropped connection: it may have
// run), or that found the task no longer active (a run sent again by
// go-redis after a read timeout finds the task its first run kept), is
// checked by reading the task's hash once more: a task in the retry set
// with the message the script writes was kept, and the attempt ends with
// ErrLastAttemptKept, not with a record of an archived task for its
// tenant while it waits to run again. A nil rdb keeps nothing.
func KeepLastAttempt(rdb redis.UniversalClient) asynq.MiddlewareFunc {
	return keepLastAttempt(rdb, keepDelay{})
}

// keepDelay bounds the delay before a kept last attempt comes back; the
// zero value is lastAttemptKeepMin to lastAttemptKeepMax. Only tests set
// it (MuxOptions.lastAttemptKeep, export_test.go), to see a kept attempt
// run again without waiting out the production bounds.
type keepDelay struct{ min, max time.Duration }

// next returns when a task kept now comes back.
func (d keepDelay) next(now time.Time) time.Time {
	lo, hi := d.min, d.max
	if lo <= 0 {
		lo, hi = lastAttemptKeepMin, lastAttemptKeepMax
	}
	if hi <= lo {
		return now.Add(lo)
	}
	return now.Add(lo + rand.N(hi-lo))
}

// keepLastAttempt is KeepLastAttempt with the delay bounds of delay.
func keepLastAttempt(rdb redis.UniversalClient, delay keepDelay) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		if rdb == nil {
			return next
		}
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			err := next.ProcessTask(ctx, t)
			if err == nil || !errors.Is(err, ErrTenantNotReady) || errors.Is(err, asynq.RevokeTask) || !lastAttempt(ctx) {
				return err
			}
			// Announced before ctx is looked at: an error handler that
			// runs because ctx ended (the deadline, a cancel) either
			// finds this keep and waits for it, or ctx ended first and
			// nothing is kept.
			end := startKeep(ctx)
			if ctx.Err() != nil {
				end()
				return err
			}
			kerr := keepLast(ctx, rdb, err, delay)
			end()
			if kerr != nil {
				LoggerFromContext(ctx).WarnContext(ctx, "could not keep a waiting task on its last attempt; asynq archives it", slog.String("error", kerr.Error()))
				return err
			}
			LoggerFromContext(ctx).InfoContext(ctx, "waiting task kept on its last attempt: back in asynq's retry set", slog.String("reason", err.Error()))
			return fmt.Errorf("%w: %w", err, ErrLastAttemptKept)
		})
	}
}

// keeps holds the keeps KeepLastAttempt is making, by queue and task id:
// a channel closed when the keep ended. asynq calls its error handler as
// soon as an attempt's ctx ends, without waiting for the handler: an
// attempt whose deadline passes while its keep runs is reported to the
// error handler as timed out on its last attempt, though the keep puts it
// back into the retry set; the error handler waits for the keep
// (waitKeep) before it looks at the task's state (recordArchive).
var keeps sync.Map

// startKeep announces a keep of the task of ctx and returns the func that
// ends it.
func startKeep(ctx context.Context) func() {
	key := keepKey(ctx)
	done := make(chan struct{})
	keeps.Store(key, done)
	return func() {
		keeps.CompareAndDelete(key, done)
		close(done)
	}
}

// waitKeep waits for a keep of the task of ctx that KeepLastAttempt is
// making, if any, or for wctx.
func waitKeep(ctx, wctx context.Context) {
	v, ok := keeps.Load(keepKey(ctx))
	if !ok {
		return
	}
	select {
	case <-v.(chan struct{}):
	case <-wctx.Done():
	}
}

// keepKey is the key of the task of ctx in keeps.
func keepKey(ctx context.Context) string {
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	return queue + "\x00" + id
}

// keepLast runs keepLastScript for the task of ctx, which waits with err.
// The task comes back at delay.next.
func keepLast(ctx context.Context, rdb redis.UniversalClient, err error, delay keepDelay) error {
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	at := delay.next(time.Now())
	p := "asynq:{" + queue + "}:"
	keys := []string{p + "active", p + "lease", p + "t:" + id, p + "retry"}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recheckTimeout)
	defer cancel()
	for range keepAttempts {
		old, rerr := rdb.HGet(rctx, keys[2], "msg").Bytes()
		if errors.Is(rerr, redis.Nil) {
			return fmt.Errorf("task %s is no longer active in queue %s", id, queue)
		}
		if rerr != nil {
			return fmt.Errorf("read task %s of queue %s: %w", id, queue, rerr)
		}
		msg, merr := keptMessage(old, err.Error())
		if merr != nil {
			return fmt.Errorf("task %s of queue %s: %w", id, queue, merr)
		}
		n, rerr := keepLastScript.Run(rctx, rdb, keys, id, old, msg, strconv.FormatInt(retryScore(at), 10)).Int()
		var refused redis.Error
		if rerr != nil && errors.As(rerr, &refused) {
			return fmt.Errorf("put task %s back into the retry set of queue %s: %w", id, queue, rerr)
		}
		if rerr != nil || n == 0 {
			// The script may have run with its reply lost (a read
			// timeout, a dropped connection), or run twice (go-redis
			// sends a command again after a read timeout): the second
			// run finds the task no longer active.
			if keptAlready(ctx, rdb, keys[2], msg) {
				return nil
			}
			if rerr != nil {
				return fmt.Errorf("put task %s back into the retry set of queue %s: %w", id, queue, rerr)
			}
			return fmt.Errorf("task %s is no longer active in queue %s", id, queue)
		}
		if n == 1 {
			return nil
		}
	}
	return fmt.Errorf("task %s of queue %s: its message kept changing", id, queue)
}

// retryScore returns at as a score of asynq's retry set, which counts in
// whole Unix seconds: rounded up, so that a kept task comes back no
// earlier than its delay. Rounded down, it came back up to a second
// early, and with a delay under a second (a test's bounds) often at once:
// another worker could take it before asynq ended the kept attempt, and
// asynq's end of it (a Done, which deletes the task by its id) deleted
// the new run.
func retryScore(at time.Time) int64 {
	s := at.Unix()
	if at.After(time.Unix(s, 0)) {
		s++
	}
	return s
}

// keptAlready reports whether the task hash key holds the task as kept by
// keepLastScript: in asynq's retry set with msg, the message the script
// writes. It reads the hash once, with a deadline of its own (the
// script's may be over); a read that fails reports false.
func keptAlready(ctx context.Context, rdb redis.UniversalClient, key string, msg []byte) bool {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recheckTimeout)
	defer cancel()
	vals, err := rdb.HMGet(rctx, key, "state", "msg").Result()
	if err != nil || len(vals) != 2 {
		return false
	}
	state, _ := vals[0].(string)
	stored, _ := vals[1].(string)
	return state == "retry" && stored == string(msg)
}

// keptMessage returns msg, an asynq task message as stored, with reason as
// its last error (TaskMessage.error_msg) and a blank run header: its run is
// over (ReportCost ends it), so the worker that takes it again asks the
// fair dispatcher's gate, as for any retry (TaskMessage.headers, a map).
// The error and run headers msg had are dropped, not overridden by fields
// appended after them: a wait met on every return keeps the task again
// and again (every 45-60 s, as long as its tenant waits), and its message
// must not grow each time (asynq's own retry rewrites a message whole).
func keptMessage(msg []byte, reason string) ([]byte, error) {
	out := make([]byte, 0, len(msg)+len(reason)+len(fair.RunHeader)+8)
	for b := msg; len(b) > 0; {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return nil, fmt.Errorf("decode task message: %w", protowire.ParseError(n))
		}
		field := b[:n]
		b = b[n:]
		if num == 7 && typ == protowire.BytesType {
			continue // TaskMessage.error_msg
		}
		if num == 15 && typ == protowire.BytesType && isRunEntry(field) {
			continue
		}
		out = append(out, field...)
	}
	out = protowire.AppendTag(out, 7, protowire.BytesType)
	out = protowire.AppendString(out, reason)
	entry := protowire.AppendTag(nil, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, fair.RunHeader)
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendString(entry, "")
	out = protowire.AppendTag(out, 15, protowire.BytesType)
	return protowire.AppendBytes(out, entry), nil
}

// isRunEntry reports whether field, a whole TaskMessage.headers entry
// (tag included), is the fair dispatcher's run header.
func isRunEntry(field []byte) bool {
	_, _, n := protowire.ConsumeTag(field)
	entry, m := protowire.ConsumeBytes(field[n:])
	if m < 0 {
		return false
	}
	for len(entry) > 0 {
		num, typ, k := protowire.ConsumeField(entry)
		if k < 0 {
			return false
		}
		if num == 1 && typ == protowire.BytesType {
			_, _, t := protowire.ConsumeTag(entry)
			key, _ := protowire.ConsumeString(entry[t:])
			return key == fair.RunHeader
		}
		entry = entry[k:]
	}
	return false
}

// lastAttempt reports whether the task of ctx runs its last allowed
// attempt: one asynq archives if it fails, with any error, not-ready ones
// included (false outside an asynq server).
func lastAttempt(ctx context.Context) bool {
	retried, ok := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return ok && ok2 && retried >= maxRetry
}
