package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
)

// CostReporter takes the finished attempts of tenant tasks to the fair
// dispatcher (fair.Reporter: batched, never blocking on Redis).
type CostReporter interface {
	Report(fair.Report)
}

// attemptTracker is a CostReporter told when an attempt begins, so that
// closing it can wait for the attempt's report (fair.Reporter.Attempt).
type attemptTracker interface {
	Attempt() (end func())
}

// Parker parks a dequeued task of a held tenant (fair.Dispatcher.ParkRun,
// which ends only the run it names), and a retried task its tenant's
// running cap has no room for (fair.Dispatcher.GateRun, which names the
// run of a retry it lets run).
type Parker interface {
	ParkRun(ctx context.Context, queue, taskID, tenantID, typ, run string) (bool, error)
	GateRun(ctx context.Context, queue, taskID, tenantID, typ string) (parked bool, run string, err error)
}

// runKey carries, in a tenant task's ctx, where ReportCost keeps the run
// token the attempt reports: the one its admission put into the task's
// headers, or the one gateRetry got for a retry.
type runKey struct{}

// ReportCost reports every attempt of a tenant task to the fair
// dispatcher when it ends, whatever its outcome (a panic too): which
// tenant, which type, and the worker time it took from here on. The
// dispatcher frees the task's running slot, charges the tenant the time
// the attempt actually cost, and refills the queue. An attempt asynq cut
// off under the handler (a shutdown that stopped waiting for it, a lost
// lease, a cancel from the dashboard) is reported as fair.Report.CutOff:
// charged, its run left going on unless asynq failed the attempt itself
// (the dashboard's cancel), which the dispatcher sees. A task the dispatcher parked (ErrTenantHeld), or handed back as one
// a drain discarded (ErrTaskDrained, which wraps it), is not reported:
// parking let it go already, and a drained task did not run.
// System tasks and tasks without a usable tenant id are not the
// dispatcher's. A task of a type no handler knows is reported under the
// type "unknown" (as the metrics count it): the dispatcher keeps a cost
// estimate per reported type and never drops one, so hostile type names
// must not reach it. The report names the run the attempt ran under
// (fair.Report.Run), so that a report delivered late cannot free the slot
// of a later run of the same task id. A nil reporter reports nothing.
func ReportCost(r CostReporter) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		if r == nil {
			return next
		}
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) (err error) {
			env := envelopeOf(ctx, t)
			if env.System || env.TenantID == "" {
				return next.ProcessTask(ctx, t)
			}
			// A reporter that waits for the attempts under way when it
			// closes (fair.Reporter) learns of this one: asynq's shutdown
			// returns without waiting for a handler it gave up on, whose
			// report comes when it returns.
			if a, ok := r.(attemptTracker); ok {
				defer a.Attempt()()
			}
			start := time.Now()
			run := t.Headers()[fair.RunHeader]
			ctx = context.WithValue(ctx, runKey{}, &run)
			defer func() {
				if errors.Is(err, ErrTenantHeld) {
					return
				}
				id, _ := asynq.GetTaskID(ctx)
				queue, _ := asynq.GetQueueName(ctx)
				rep := fair.Report{Queue: queue, TaskID: id, TenantID: env.TenantID, Type: metricType(env), Cost: time.Since(start), Run: run}
				// asynq cancelled the attempt under the handler: a shutdown
				// that stopped waiting for it (asynq put the task back into
				// its pending list, message and run unchanged, and another
				// worker may be running that run already), or its lease
				// lost, or a cancel from the dashboard. The attempt's run
				// goes on, or the lease check ends it: the report must not
				// free the slot of a run in progress, but the worker time
				// the attempt took is the tenant's all the same (CutOff:
				// charged; the dispatcher ends the run only when asynq
				// failed the attempt itself, as after the dashboard's
				// cancel).
				if errors.Is(ctx.Err(), context.Canceled) {
					rep.CutOff = true
					r.Report(rep)
					return
				}
				r.Report(rep)
				if err != nil && ctx.Err() == nil {
					// The report ends the run; asynq keeps the task (a
					// retry, or archived and perhaps run again by hand)
					// with the message it ran with. A retry that does not
					// count a failure (ErrTenantNotReady) keeps retry count
					// 0, and with the admission's run still named its next
					// attempt would pass the gate as an admitted first
					// attempt, outside its tenant's running cap. asynq
					// writes the message back from this very map (the
					// task's headers are its message's), so dropping the
					// run here makes that attempt ask the gate. Not once
					// the attempt's deadline passed: asynq then settles
					// the task on its own goroutine without waiting for
					// this one (its error handler, then the retry or the
					// archive, which read and encode this map), and a
					// write here would race those reads (the runtime may
					// stop the worker on it). A deadline counts as a
					// failure, so that retry asks the gate anyway.
					delete(t.Headers(), fair.RunHeader)
				}
			}()
			return next.ProcessTask(ctx, t)
		})
	}
}

// park asks the dispatcher to park a waiting task of a suspended tenant.
// Parked, the task waits in the dispatcher until the tenant resumes and
// asynq lets it go (ErrTenantHeld wraps asynq.RevokeTask: not retried, not
// archived, also on its last attempt); otherwise (the tenant was resumed
// meanwhile, the call came after a later run of the task id was admitted,
// or Redis failed) it is retried soon like any waiting task. A task a
// drain discarded (fair.ErrDrained) is handed back unrun (ErrTaskDrained).
//
// The park names the run the attempt runs under, so that a late call
// cannot end a later run of the task id: on a first attempt the run its
// admission wrote into the task's headers; a retry's is the gate's, so a
// retry (and a first attempt whose message names no run: see gateRetry)
// asks the gate first (which parks it itself when it was not
// admitted), and its report names the gate's run too. A retry whose gate
// fails parks without a run, as before run tokens.
func park(ctx context.Context, p Parker, t *asynq.Task, env Envelope, notReady error) error {
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	run := t.Headers()[fair.RunHeader]
	if n, _ := asynq.GetRetryCount(ctx); n > 0 || run == "" {
		parked, gated, err := gate(ctx, p, queue, id, env.TenantID, env.Type)
		switch {
		case errors.Is(err, fair.ErrDrained):
			return ErrTaskDrained
		case err != nil:
			LoggerFromContext(ctx).WarnContext(ctx, "fair dispatch: could not gate a retried task of a suspended tenant; parking it without its run", slog.String("error", err.Error()))
			run = ""
		case parked:
			return ErrTenantHeld
		default:
			run = gated
			if to, ok := ctx.Value(runKey{}).(*string); ok && run != "" {
				*to = run
			}
		}
	}
	parked, err := p.ParkRun(ctx, queue, id, env.TenantID, env.Type, run)
	if errors.Is(err, fair.ErrDrained) {
		return ErrTaskDrained
	}
	if err != nil || !parked {
		return notReady
	}
	return ErrTenantHeld
}

// gate asks the dispatcher's gate about an attempt (Parker.GateRun), and
// asks again, up to gateAttempts times in all, when no answer came: the
// call may have been applied all the same (its answer lost to a timeout),
// parking the task or counting it as running. Asked again about the same
// attempt, the gate answers as it did: a task it parked is parked again
// (still held or at the cap) or let run with its parked record dropped
// (room now), and a task it counted as running answers admitted, under a
// new run token, without counting it twice. Running the attempt after a
// lost "parked" instead would run it a second time once the parked record
// is released.
func gate(ctx context.Context, p Parker, queue, id, tenantID, typ string) (parked bool, run string, err error) {
	for attempt := 1; ; attempt++ {
		parked, run, err = p.GateRun(ctx, queue, id, tenantID, typ)
		if err == nil || errors.Is(err, fair.ErrDrained) || attempt == gateAttempts {
			return parked, run, err
		}
		select {
		case <-ctx.Done():
			return parked, run, err
		case <-time.After(time.Duration(attempt) * gatePause):
		}
	}
}

// gateAttempts and gatePause bound how gate asks again: three calls, 50 and
// 100 ms apart.
const (
	gateAttempts = 3
	gatePause    = 50 * time.Millisecond
)

// gateRetry asks the dispatcher whether a task that came to this worker
// past admission may run now. That is a task asynq retried: a retry comes
// back from asynq's retry set past admission, so without this a tenant
// whose tasks keep failing would run more at once than its running cap.
// It is also a first attempt whose message names no run (no
// fair.RunHeader): one the dispatcher parked that asynq put back into its
// pending list instead of letting it go (a shutdown that stopped waiting
// for its handler: the dispatcher blanked the run in asynq's copy of the
// message when it parked it), which would otherwise run while its tenant
// is held, and again once released; one admitted by the previous release;
// one that reached asynq past the dispatcher; one whose earlier attempt
// ended with an error asynq did not count as a failure (its retry count
// stays 0), or that was archived and run again by hand: ReportCost drops
// the run from its message. An admitted first attempt
// (its message names its run) is not asked about: the common path costs
// no Redis call.
//
// It returns ErrRetryParked when the dispatcher parked the task (its last
// attempt too: the dispatcher keeps the task, and asynq lets it go without
// archiving it), ErrTaskDrained for a task a drain discarded (asynq lets
// it go unrun), nil when it may run: one admitted, one the cap has room
// for (now counted as running). A dispatcher that cannot be reached (gate
// asked three times) lets the task run: the cap is a matter of sharing, not
// of correctness.
// A task let through runs under a run token of its own, which its
// report names (ReportCost).
func gateRetry(ctx context.Context, p Parker, env Envelope, t *asynq.Task) error {
	if n, _ := asynq.GetRetryCount(ctx); n == 0 && t.Headers()[fair.RunHeader] != "" {
		return nil
	}
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	parked, run, err := gate(ctx, p, queue, id, env.TenantID, env.Type)
	if errors.Is(err, fair.ErrDrained) {
		return ErrTaskDrained
	}
	if err != nil {
		LoggerFromContext(ctx).WarnContext(ctx, "fair dispatch: could not gate a retried task; it runs", slog.String("error", err.Error()))
		return nil
	}
	if parked {
		return ErrRetryParked
	}
	if to, ok := ctx.Value(runKey{}).(*string); ok && run != "" {
		*to = run
	}
	return nil
}
