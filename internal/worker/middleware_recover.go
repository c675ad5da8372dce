package worker

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/hibiken/asynq"
)

// Recover turns a panic in the rest of the chain into an ordinary error
// wrapping ErrPanic (retried: a panic may be transient) and logs it at
// error level with the stack. A nil logger means slog.Default().
func Recover(logger *slog.Logger) asynq.MiddlewareFunc {
	if logger == nil {
		logger = slog.Default()
	}
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) (err error) {
			defer func() {
				r := recover()
				if r == nil {
					return
				}
				taskID, _ := asynq.GetTaskID(ctx)
				logger.ErrorContext(ctx, "task handler panicked",
					slog.String("task_id", taskID),
					slog.String("task_type", t.Type()),
					slog.String("tenant_id", envelopeOf(ctx, t).TenantID),
					slog.String("panic", fmt.Sprint(r)),
					slog.String("stack", string(debug.Stack())))
				err = fmt.Errorf("%w: %v", ErrPanic, r)
			}()
			return next.ProcessTask(ctx, t)
		})
	}
}
