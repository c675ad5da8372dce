package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/tasks"
)

// The reasons a tenant is shown for an archived task (GET /v1/tasks/{id}
// "last_error"): a fixed set of stable texts. A task's error message stays
// with the operators (logs, dashboard): it may hold SQL errors, file paths
// or the mail server's user and host.
const (
	ReasonInvoiceNotFound  = "invoice not found"
	ReasonInvoiceInvalid   = "invoice cannot be rendered"
	ReasonInvalidTask      = "invalid task"
	ReasonTimedOut         = "timed out"
	ReasonRefused          = "task refused"
	ReasonRetriesExhausted = "failed after retries"
)

// recordArchiveTimeout bounds writing a task record; it runs detached from
// the task's ctx, which may be done (a timeout, a shutdown).
const recordArchiveTimeout = 2 * time.Second

// PublicReason returns the reason a tenant is shown for a task archived
// with err: one of the Reason constants, never err's text.
func PublicReason(err error) string {
	switch {
	case errors.Is(err, invoice.ErrNotFound):
		return ReasonInvoiceNotFound
	case errors.Is(err, pdf.ErrInvalidInvoice), errors.Is(err, invoice.ErrInvalidData):
		return ReasonInvoiceInvalid
	case errors.Is(err, tasks.ErrInvalidPayload):
		return ReasonInvalidTask
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimedOut
	case IsPermanent(err):
		return ReasonRefused
	}
	return ReasonRetriesExhausted
}

// archives reports whether asynq archives a task that failed with err
// after retried retries of maxRetry (asynq's processor decides the same
// way, after the error handler ran).
func archives(err error, retried, maxRetry int) bool {
	return !errors.Is(err, asynq.RevokeTask) && (IsPermanent(err) || retried >= maxRetry)
}

// recordArchive writes the tenant's record of a task being archived
// (tasks.TaskRecords, P15 in docs/architecture.md), so that another tenant's
// volume can never evict or hide it. A failure is logged: the task is
// archived in asynq all the same. A task whose tenant does not exist
// (deleted, or never there) or is being deleted gets no record: no one can
// read it, and its keys would stay in Redis for the records' TTL after the
// tenant's deletion removed everything else of it. Nor does a task asynq will not
// archive after all (archiving): kept in its retry set by KeepLastAttempt
// while its deadline passed, or no longer active.
func recordArchive(ctx context.Context, records *tasks.TaskRecords, logger *slog.Logger, env Envelope, t *asynq.Task, err error, retried int) {
	if records == nil || env.System || env.TenantID == "" || isTenantGone(err) {
		return
	}
	taskID, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*recheckTimeout)
	waitKeep(ctx, wctx)
	wcancel()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordArchiveTimeout)
	defer cancel()
	if st, ok := archiving(rctx, records.Redis(), queue, taskID); !ok {
		logger.DebugContext(ctx, "no record of a task asynq does not archive", slog.String("task_id", taskID),
			slog.String("task_type", t.Type()), slog.String("tenant_id", env.TenantID), slog.String("state", st))
		return
	}
	rec := tasks.TaskRecord{TaskID: taskID, Type: t.Type(), Queue: queue, Retried: retried, Reason: PublicReason(err)}
	if perr := records.Put(rctx, env.TenantID, rec); perr != nil {
		logger.WarnContext(ctx, "record archived task", slog.String("task_id", taskID),
			slog.String("task_type", t.Type()), slog.String("tenant_id", env.TenantID), slog.String("error", perr.Error()))
	}
}

// archiving reports whether asynq is about to archive the task id of
// queue (or did): whether it holds it as active or archived, read once on
// rctx (after any keep of the task by KeepLastAttempt ended). asynq calls the
// error handler before it archives, and its archive finds nothing to move
// when the task is no longer active: a keep racing the attempt's deadline
// put it back into the retry set, or something else took it (a drain, a
// hand-back). It also returns the state read ("gone" for no task). A read
// that fails reports true: the record is written as before.
func archiving(rctx context.Context, rdb redis.UniversalClient, queue, taskID string) (string, bool) {
	if rdb == nil || taskID == "" || queue == "" {
		return "", true
	}
	st, err := rdb.HGet(rctx, "asynq:{"+queue+"}:t:"+taskID, "state").Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "gone", false
	case err != nil:
		return "", true
	}
	return st, st == "active" || st == "archived"
}

// ForgetRecordOnSuccess drops the tenant's record of a task that completed:
// an archived task run again from the dashboard (asynq's "run") is not
// enqueued anew, so nothing else forgets its record, and once asynq drops
// the completed task (its retention) GET /v1/tasks/{id} would fall back to
// the record and report it archived. A nil records does nothing.
func ForgetRecordOnSuccess(records *tasks.TaskRecords, logger *slog.Logger) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		if records == nil {
			return next
		}
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			err := next.ProcessTask(ctx, t)
			if err != nil {
				return err
			}
			if env := envelopeOf(ctx, t); !env.System && env.TenantID != "" {
				id, _ := asynq.GetTaskID(ctx)
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordArchiveTimeout)
				defer cancel()
				if ferr := records.Forget(rctx, env.TenantID, id); ferr != nil && logger != nil {
					logger.WarnContext(ctx, "forget record of a completed task", slog.String("task_id", id),
						slog.String("task_type", t.Type()), slog.String("tenant_id", env.TenantID), slog.String("error", ferr.Error()))
				}
			}
			return nil
		})
	}
}
