package tasks

import (
	"context"

	"github.com/hibiken/asynq"
)

// KnownTypes archives tasks whose type has no handler in this worker, with
// a reason, instead of letting asynq retry "handler not found" 25 times
// over days. An archived task is kept: after deploying a worker that knows
// the type, an operator can run it again from the dashboard.
//
// It also refuses a type that only shares a prefix with a registered one
// (asynq's mux matches patterns by prefix: "invoice:pdfx" would otherwise
// reach the invoice:pdf handler).
func KnownTypes(types ...string) asynq.MiddlewareFunc {
	known := make(map[string]bool, len(types))
	for _, t := range types {
		known[t] = true
	}
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			if !known[t.Type()] {
				return Permanentf("unknown task type %.100q: no handler in this worker version (archived; run it again from the dashboard after deploying a worker that handles it)", t.Type())
			}
			return next.ProcessTask(ctx, t)
		})
	}
}
