package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/logctx"
)

// loggerKey carries the task's logger in a handler's ctx.
type loggerKey struct{}

// Log logs one line per task attempt with task_id, task_type, tenant_id
// (from the envelope, when valid), queue, retry, duration and outcome (ok,
// error, skip_retry, not_ready, panic, cut_off); errors carry the error. It puts a
// logger with the task's attributes into ctx: handlers log through
// LoggerFromContext, so their lines carry them too. It also puts the
// attributes themselves into ctx (logctx.With): the components that log
// through the process's own logger (the tenant service, the tenant cache,
// the enqueuer), built on logctx.Handler as the binaries' loggers are, add
// them to the lines they log with that ctx. A nil logger means
// slog.Default().
//
// Levels: ok at info, not_ready at warn (the task waits for its tenant),
// except a task its database's breaker held (ErrDatabaseDown) at debug,
// cut_off at warn (asynq cut the attempt off under the handler: at
// shutdown it put the task back into its queue; a lost lease or a cancel
// is logged by asynq and the error handler), everything else at error.
func Log(logger *slog.Logger) asynq.MiddlewareFunc {
	if logger == nil {
		logger = slog.Default()
	}
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			taskID, _ := asynq.GetTaskID(ctx)
			queue, _ := asynq.GetQueueName(ctx)
			retry, _ := asynq.GetRetryCount(ctx)
			attrs := []slog.Attr{
				slog.String("task_id", taskID),
				slog.String("task_type", t.Type()),
			}
			if env := envelopeOf(ctx, t); !env.System {
				attrs = append(attrs, slog.String("tenant_id", env.TenantID))
			}
			tl := slog.New(logger.Handler().WithAttrs(attrs))
			ctx = context.WithValue(logctx.With(ctx, attrs...), loggerKey{}, tl)

			start := time.Now()
			done := false
			defer func() {
				if !done { // a panic is unwinding through here; Recover logs its stack
					tl.ErrorContext(ctx, "task finished", slog.String("queue", queue), slog.Int("retry", retry),
						slog.Duration("duration", time.Since(start)), slog.String("outcome", OutcomePanic))
				}
			}()
			err := next.ProcessTask(ctx, t)
			done = true

			outcome := attemptOutcome(ctx, err)
			level := slog.LevelError
			switch outcome {
			case OutcomeOK:
				level = slog.LevelInfo
			case OutcomeNotReady, OutcomeCutOff:
				level = slog.LevelWarn
				if errors.Is(err, ErrDatabaseDown) {
					level = slog.LevelDebug // held by its database's breaker, which logs the outage
				}
			}
			line := []any{slog.String("queue", queue), slog.Int("retry", retry),
				slog.Duration("duration", time.Since(start)), slog.String("outcome", outcome)}
			if err != nil {
				line = append(line, slog.String("error", err.Error()))
			}
			tl.Log(ctx, level, "task finished", line...)
			return err
		})
	}
}

// LoggerFromContext returns the logger Log put into ctx (with task_id,
// task_type and tenant_id): the logger of every handler. Outside the chain
// it returns slog.Default().
func LoggerFromContext(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}
