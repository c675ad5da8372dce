package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// maxEnqueues bounds the enqueue calls that run at once, those whose
// callers stopped waiting included. It is far above what a healthy Redis
// keeps in flight (a call takes a round trip or two), so it only bites
// while Redis does not answer: then it bounds the goroutines waiting for
// it, and callers past it wait for one to end, or for their ctx.
var maxEnqueues = 4096

// The states of one detached enqueue call: running, ended (its caller
// takes the result) or abandoned (its caller stopped waiting).
const (
	callRunning int32 = iota
	callEnded
	callAbandoned
)

// detached runs f, the Redis work of an enqueue, so that the caller stops
// waiting when ctx ends, also while Redis does not answer: the Redis
// client bounds a command by its own timeouts (seconds, retried), not by
// ctx, and asynq's client takes no deadline of its own. The HTTP API
// answers 503 at REQUEST_TIMEOUT that way instead of seconds later.
//
// f runs on ctx without its cancellation: an enqueue is a sequence of
// calls (look up the tenant, the script, a replace's look-up, delete and
// enqueue again), and cut between two of them it could leave a finished
// task deleted and its replacement not enqueued. So f goes on after its
// caller gave up, and ends when Redis answers or the client gives up;
// what it did is logged then (each of payloads' tasks with its tenant, id,
// type and outcome), since no caller sees it. That is safe to retry: every
// enqueue the API makes has a task id, so a retry of one that was applied
// meanwhile finds its task (dedupe), and one that was not is applied by
// the retry. Wait waits for such calls.
func (e *Enqueuer) detached(ctx context.Context, op string, payloads []Payload, f func(context.Context) ([]EnqueueResult, error)) ([]EnqueueResult, error) {
	select {
	case e.enqueues <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: waiting for a running enqueue to end: %w", op, ctx.Err())
	}
	type answer struct {
		res []EnqueueResult
		err error
	}
	var state atomic.Int32
	done := make(chan answer, 1)
	e.running.add()
	go func() {
		defer e.running.done()
		defer func() { <-e.enqueues }()
		var a answer
		func() {
			defer func() {
				if p := recover(); p != nil {
					a.err = fmt.Errorf("%s: panic: %v", op, p)
				}
			}()
			a.res, a.err = f(context.WithoutCancel(ctx))
		}()
		if state.CompareAndSwap(callRunning, callEnded) {
			done <- a
			return
		}
		if a.err != nil {
			e.late.failed.Add(1)
		} else {
			e.late.applied.Add(1)
		}
		e.logAbandoned(ctx, op, payloads, a.res, a.err)
	}()
	select {
	case a := <-done:
		return a.res, a.err
	case <-ctx.Done():
		if state.CompareAndSwap(callRunning, callAbandoned) {
			return nil, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		a := <-done // it ended just now: its caller takes the result
		return a.res, a.err
	}
}

// logAbandoned logs what an enqueue of payloads did after its caller
// stopped waiting: the caller answered an error, so these lines are the
// only trace of the tasks it did enqueue (a retry finds them by their ids)
// or failed to. Each is a task line: one per payload, with its tenant_id,
// task_id and task_type. res is in payload order; an enqueue that failed
// part-way (one by one, without fair dispatch) returns those it applied,
// none of them a running task whose follow-up failed (that payload has
// no result); an error that comes with a result for every payload still
// gets a line of its own.
func (e *Enqueuer) logAbandoned(ctx context.Context, op string, payloads []Payload, res []EnqueueResult, err error) {
	failedLogged := false
	for i, p := range payloads {
		attrs := []slog.Attr{slog.String("op", op)}
		if tp, ok := p.(TenantPayload); ok {
			attrs = append(attrs, slog.String("tenant_id", tp.Owner()))
		}
		if i < len(res) && res[i].Info != nil {
			r := res[i]
			attrs = append(attrs, slog.String("task_id", r.Info.ID), slog.String("task_type", r.Info.Type),
				slog.String("queue", r.Info.Queue), slog.Bool("existing", r.Existing))
			e.logger.LogAttrs(ctx, slog.LevelInfo, "enqueue ended after its caller gave up: applied", attrs...)
			continue
		}
		if err != nil {
			attrs = append(attrs, slog.String("task_id", p.Spec().TaskID), slog.String("task_type", p.TypeName()),
				slog.Any("error", err))
			e.logger.LogAttrs(ctx, slog.LevelWarn, "enqueue ended after its caller gave up: failed", attrs...)
			failedLogged = true
		}
	}
	if err != nil && !failedLogged {
		// Every payload has a result and yet the call failed: the error
		// still needs its line.
		attrs := []slog.Attr{slog.String("op", op)}
		if len(payloads) > 0 {
			if tp, ok := payloads[0].(TenantPayload); ok {
				attrs = append(attrs, slog.String("tenant_id", tp.Owner()))
			}
		}
		attrs = append(attrs, slog.Any("error", err))
		e.logger.LogAttrs(ctx, slog.LevelWarn, "enqueue ended after its caller gave up: failed", attrs...)
	}
}

// lateCalls counts the enqueue calls that ended after their callers gave
// up, by outcome.
type lateCalls struct{ applied, failed atomic.Uint64 }

// EndedLate returns how many Enqueue and EnqueueMany calls ended after
// their callers had stopped waiting (their context ended first), applied
// and failed: the callers answered an error, so these are the enqueues
// only the log (and a client's retry) knows the outcome of.
func (e *Enqueuer) EndedLate() (applied, failed uint64) {
	return e.late.applied.Load(), e.late.failed.Load()
}

// Wait waits until no enqueue call runs (those whose callers stopped
// waiting included), or ctx ends (its error, then). A process calls it before it
// closes the Redis client those calls use, so that they end with Redis's
// answer, not with a closed client.
func (e *Enqueuer) Wait(ctx context.Context) error {
	idle, n := e.running.idle()
	if n == 0 {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		_, n = e.running.idle()
		return fmt.Errorf("wait for running enqueues: %d still running: %w", n, ctx.Err())
	}
}

// calls counts the running enqueue calls for Wait. Unlike a
// sync.WaitGroup, it may be waited on while calls start and end: Wait runs
// at shutdown, while the scheduler may still enqueue.
type calls struct {
	mu sync.Mutex
	n  int
	// ended is closed when n drops to 0; a new one is made when n leaves 0.
	ended chan struct{}
}

func (c *calls) add() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		c.ended = make(chan struct{})
	}
	c.n++
}

func (c *calls) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n--
	if c.n == 0 {
		close(c.ended)
	}
}

// idle returns a channel closed once no call runs (nil when none runs
// now) and how many run now.
func (c *calls) idle() (<-chan struct{}, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended, c.n
}
