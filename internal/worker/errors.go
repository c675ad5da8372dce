package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
)

// Errors of the executors; match them with errors.Is.
var (
	// ErrTenantNotReady means the task's tenant exists but the status
	// policy makes this task wait (a provisioning or suspended tenant's
	// work, a destroy of a tenant not marked deleting). The task is retried
	// later and the attempt does not count as a failure (see ServerConfig);
	// on its last allowed attempt, which asynq would archive, KeepLastAttempt
	// puts it back into asynq's retry set instead.
	ErrTenantNotReady = errors.New("tenant not ready")
	// ErrTenantHeld wraps ErrTenantNotReady and asynq.RevokeTask for a
	// task of a suspended tenant that the fair dispatcher parked: the
	// dispatcher keeps its message, asynq lets it go (RevokeTask: neither
	// retried nor archived, no failure counted, also on its last attempt),
	// and it comes back to the front of its tenant's backlog, retry count
	// kept, when the tenant resumes (fair.Dispatcher.Release).
	ErrTenantHeld = fmt.Errorf("tenant held by the dispatcher: %w: %w", ErrTenantNotReady, asynq.RevokeTask)
	// ErrRetryParked wraps ErrTenantHeld for a retried task that the fair
	// dispatcher parked because its tenant was at its running cap (or
	// held): the dispatcher keeps it until a worker's heartbeat puts it
	// back into its tenant's backlog, from where it is admitted in turn,
	// under the cap (fair.Dispatcher.Gate).
	ErrRetryParked = fmt.Errorf("retry waits for a running slot of its tenant: %w", ErrTenantHeld)
	// ErrTaskDrained wraps ErrTenantHeld for a task that a drain of its
	// tenant discarded while its worker was handing it back, and that
	// asynq brought back to a worker all the same (fair.ErrDrained): asynq
	// lets it go (RevokeTask) without running it, counting a failure or
	// archiving it, and it is not reported to the dispatcher.
	ErrTaskDrained = fmt.Errorf("task discarded by a drain of its tenant: %w", ErrTenantHeld)
	// ErrPanic is wrapped by the error Recover returns for a panicking
	// handler.
	ErrPanic = errors.New("task handler panicked")
	// ErrNoResultWriter is returned by WriteResult outside a task handler.
	ErrNoResultWriter = errors.New("no task result writer in context")
)

// Permanent wraps err with asynq.SkipRetry: the task is archived at once,
// with err's message as its last error, because retrying cannot help (a
// payload that does not decode, an unknown tenant, a missing invoice).
func Permanent(err error) error {
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		return err
	}
	return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
}

// Permanentf is Permanent(fmt.Errorf(format, args...)).
func Permanentf(format string, args ...any) error {
	return Permanent(fmt.Errorf(format, args...))
}

// goneError is the error of a task whose tenant the catalog does not have
// (deleted, or never there) or is deleting. Such a task is archived like
// any refused one, but no record of it is written for the tenant
// (recordArchive): nobody can read one (the API refuses a deleting
// tenant), and it would outlive the deletion in Redis (the destroy deletes
// the tenant's records before its row, perhaps before this task is
// archived).
type goneError struct{ msg string }

func (e *goneError) Error() string { return e.msg }

// tenantGone is Permanentf for a task whose tenant does not exist or is
// being deleted.
func tenantGone(format string, args ...any) error {
	return Permanent(&goneError{msg: fmt.Sprintf(format, args...)})
}

// isTenantGone reports whether err was made by tenantGone.
func isTenantGone(err error) bool {
	var g *goneError
	return errors.As(err, &g)
}

// IsPermanent reports whether err archives the task without retries.
func IsPermanent(err error) bool { return errors.Is(err, asynq.SkipRetry) }

// IsFailure is the asynq server's failure predicate: every error except
// ErrTenantNotReady counts as a failure (increments the retry count and the
// queue's failed statistics). Waiting for a tenant is not a failure, so a
// suspended tenant's tasks are never archived for having waited too long.
func IsFailure(err error) bool { return !errors.Is(err, ErrTenantNotReady) }

// Task outcomes, as logged by Log and counted by Metrics.
const (
	OutcomeOK        = "ok"
	OutcomeError     = "error"
	OutcomeSkipRetry = "skip_retry"
	OutcomeNotReady  = "not_ready"
	OutcomePanic     = "panic"
	// OutcomeCutOff is an attempt that asynq cut off under its handler
	// (attemptOutcome): what the handler returned is not its fate.
	OutcomeCutOff = "cut_off"
)

// Outcome classifies a handler's result: ok, not_ready (ErrTenantNotReady),
// skip_retry (archived at once), panic (ErrPanic) or error (retried).
func Outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrTenantNotReady):
		return OutcomeNotReady
	case errors.Is(err, asynq.SkipRetry):
		return OutcomeSkipRetry
	case errors.Is(err, ErrPanic):
		return OutcomePanic
	}
	return OutcomeError
}

// attemptOutcome is Outcome of an attempt's result err, except that a
// failure returned once asynq had cancelled the attempt's ctx is cut_off:
// a shutdown that stopped waiting for the handler (asynq put the task
// back into its queue, no failure counted), its lease lost, or a cancel
// from the dashboard. asynq then decides the task's fate without the
// handler's error, which is mostly the cancellation it caused. A task's
// own deadline (context.DeadlineExceeded) is a failure like any other.
func attemptOutcome(ctx context.Context, err error) string {
	outcome := Outcome(err)
	if (outcome == OutcomeError || outcome == OutcomeSkipRetry) && errors.Is(ctx.Err(), context.Canceled) {
		return OutcomeCutOff
	}
	return outcome
}
