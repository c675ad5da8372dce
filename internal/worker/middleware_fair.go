package worker

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
)

// CostReporter takes the finished attempts of tenant tasks to the fair
// dispatcher (fair.Reporter: batched, never blocking on Redis).
type CostReporter interface {
	Report(fair.Report)
}

// Parker parks a dequeued task of a held tenant (fair.Dispatcher.Park).
type Parker interface {
	Park(ctx context.Context, queue, taskID, tenantID, typ string) (bool, error)
}

// ReportCost reports every attempt of a tenant task to the fair
// dispatcher when it ends, whatever its outcome (a panic too): which
// tenant, which type, and the worker time it took from here on. The
// dispatcher frees the task's running slot, charges the tenant the time
// the attempt actually cost, and refills the queue. A task the dispatcher
// parked (ErrTenantHeld) is not reported: parking let it go already.
// System tasks and tasks without a usable tenant id are not the
// dispatcher's. A nil reporter reports nothing.
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
			start := time.Now()
			defer func() {
				if errors.Is(err, ErrTenantHeld) {
					return
				}
				id, _ := asynq.GetTaskID(ctx)
				queue, _ := asynq.GetQueueName(ctx)
				r.Report(fair.Report{Queue: queue, TaskID: id, TenantID: env.TenantID, Type: env.Type, Cost: time.Since(start)})
			}()
			return next.ProcessTask(ctx, t)
		})
	}
}

// park asks the dispatcher to park a waiting task of a suspended tenant.
// Parked, the task waits in asynq's retry set without retries until the
// tenant resumes (ErrTenantHeld); otherwise (the tenant was resumed
// meanwhile, or Redis failed) it is retried soon like any waiting task.
func park(ctx context.Context, p Parker, env Envelope, notReady error) error {
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	parked, err := p.Park(ctx, queue, id, env.TenantID, env.Type)
	if err != nil || !parked {
		return notReady
	}
	return ErrTenantHeld
}
