package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// ResolveTenant resolves the task's tenant from the envelope's tenant_id
// and decides, with the status policy (tenantctx.Status.Decide) on the
// task type's activity, whether the task runs now. System tasks pass
// through without a tenant. For every other task (its tenant_id already
// checked by the envelope):
//
//   - a tenant the catalog does not know (storage.ErrNotFound: deleted or
//     never existed): archived at once (asynq.SkipRetry) with the reason;
//     the handler never runs; with erased set, first the fair dispatcher
//     forgets the tenant in the task's queue when its erasure is recorded
//     (forgetErased: the enqueue of the task, after the erasure, gave the
//     dispatcher the tenant's state again), and a failure to check or
//     forget is an ordinary error, retried; except a destroy (tenant:destroy), whose
//     handler runs without a tenant, with the id in ctx (ErasedTenant):
//     a run of it may have deleted the row and been cut off before it
//     returned, and its retry finishes the erasure (or archives the task
//     when no erasure of the tenant was recorded);
//   - the policy says run: the task runs with ctx =
//     tenantctx.WithTenant(ctx, tenant); but a task asynq retried, or a
//     first attempt whose message names no fair-dispatch run, with parker
//     set, first asks the fair dispatcher for a running slot (gateRetry),
//     and is parked (ErrRetryParked) when its tenant has none, or handed
//     back unrun (ErrTaskDrained) when a drain discarded it;
//   - the policy says wait (a provisioning or suspended tenant's work, a
//     destroy of a tenant not marked deleting): ErrTenantNotReady, retried
//     later without counting as a failure; a suspended tenant's task that
//     the fair dispatcher holds is parked instead (ErrTenantHeld: asynq
//     lets it go, also on its last attempt, and the dispatcher keeps it
//     until the tenant resumes), when parker is set; a wait met on the
//     last allowed attempt and not parked is kept by KeepLastAttempt;
//   - the policy refuses (work or a migration of a deleting tenant, an
//     unknown status): archived with the reason; for a tenant seen
//     deleting, with erased set, first forgetErased as for an unknown one
//     (the answer may be a cache's that has not seen the row deleted yet,
//     and the task a late enqueue's after the erasure);
//   - a catalog error (database or Redis down): an ordinary error, retried;
//   - a task that fails because its tenant was deleted (or marked deleting)
//     while it ran: archived with that reason, not retried; also one whose
//     handler failed for good (a tenant:migrate refused because its
//     schema went with the tenant), so that, as for any task of a tenant
//     gone, it leaves no record and, the erasure recorded, forgets the
//     tenant (droppedIfDeleted).
//
// A task's tenant comes from its payload only, never from a previous task
// or a default. catalog is the cached catalog in production.
func ResolveTenant(catalog storage.TenantStore, parker Parker, erased ErasedForgetter) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			env := envelopeOf(ctx, t)
			if env.System {
				return next.ProcessTask(ctx, t)
			}
			if env.Err != nil {
				return Permanent(env.Err)
			}
			tenant, err := catalog.TenantByID(ctx, env.TenantID)
			if errors.Is(err, storage.ErrNotFound) && env.Activity == tenantctx.Destruction {
				// Perhaps the retry of a destroy that deleted the row and
				// was cut off: its handler finishes it or archives it.
				return next.ProcessTask(withErasedTenant(ctx, env.TenantID), t)
			}
			if errors.Is(err, storage.ErrNotFound) {
				if err := forgetErased(ctx, erased, env); err != nil {
					return err
				}
				return tenantGone("tenant %s not found (deleted or never existed)", env.TenantID)
			}
			if err != nil {
				return fmt.Errorf("look up tenant %s: %w", env.TenantID, err)
			}
			if err := admit(env, tenant); err != nil {
				if tenant.Status == tenantctx.StatusDeleting && IsPermanent(err) {
					// Perhaps a stale answer: the row may be gone, and
					// this task the late enqueue that gave the
					// dispatcher the tenant's state again.
					if ferr := forgetErased(ctx, erased, env); ferr != nil {
						return ferr
					}
				}
				if parker != nil && errors.Is(err, ErrTenantNotReady) && tenant.Status == tenantctx.StatusSuspended {
					return park(ctx, parker, t, env, err)
				}
				return err
			}
			if parker != nil {
				if err := gateRetry(ctx, parker, env, t); err != nil {
					return err
				}
			}
			err = next.ProcessTask(tenantctx.WithTenant(ctx, tenant), t)
			if err != nil && !isTenantGone(err) && env.Activity != tenantctx.Destruction {
				// Also a permanent failure: a refusal the tenant's
				// deletion caused (a tenant:migrate whose schema went)
				// is archived as the deletion's.
				return droppedIfDeleted(ctx, catalog, erased, env, err)
			}
			return err
		})
	}
}

// ErasedForgetter forgets what the fair dispatcher keeps of a tenant
// whose erasure is recorded (tenancy.Service.ForgetErased).
type ErasedForgetter interface {
	// ForgetErased forgets tenant id in queues (every queue when none is
	// named) when the audit log records its erasure, and reports whether
	// it did (false without fair dispatch); storage.ErrNotFound when it
	// records none, and nothing is forgotten.
	ForgetErased(ctx context.Context, id string, queues ...string) (bool, error)
}

// forgetTimeout bounds forgetErased: an audit read and one script call
// per queue, on the path of a task that is archived anyway.
const forgetTimeout = 5 * time.Second

// forgetErased asks erased to forget env's tenant, which the catalog does
// not know, in the queue of the task of ctx (every queue when ctx names
// none, as for a task run outside asynq). An enqueue that resolved the
// tenant before its erasure completed and reached Redis after the
// destroy's last look gave the dispatcher the tenant's state (policy,
// backlog) again; the enqueue of such a task always puts it where a
// worker meets it in that queue, so this is where the state goes again.
// A task of a tenant the catalog does not know is rare and is archived:
// nothing is added to the path of any other task. No erasure recorded
// (storage.ErrNotFound: an id that never was a tenant's, or a catalog
// answer that does not hold) forgets nothing and returns nil: the task is
// archived as before. Any other failure is returned, to be retried: the
// task is the only thing left that would forget the state.
func forgetErased(ctx context.Context, erased ErasedForgetter, env Envelope) error {
	if erased == nil {
		return nil
	}
	var queues []string
	if q, ok := asynq.GetQueueName(ctx); ok && q != "" {
		queues = []string{q}
	}
	fctx, cancel := context.WithTimeout(ctx, forgetTimeout)
	defer cancel()
	forgot, err := erased.ForgetErased(fctx, env.TenantID, queues...)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("tenant %s not found; forget its state after its erasure: %w", env.TenantID, err)
	case !forgot:
		return nil
	}
	// The task's logger (Log) names its task_id, task_type and tenant_id
	// already: named again, each would be in the line twice.
	LoggerFromContext(ctx).InfoContext(ctx, "task of an erased tenant: its fair-dispatch state forgotten",
		slog.Any("queues", queues))
	return nil
}

// erasedKey is the context key of ErasedTenant.
type erasedKey struct{}

// withErasedTenant returns ctx naming id as a destroy's tenant that the
// catalog no longer has.
func withErasedTenant(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, erasedKey{}, id)
}

// ErasedTenant returns the id of the tenant of a destroy task whose
// catalog row is gone, as ResolveTenant passes it to the handler instead
// of a tenant; false for any other task.
func ErasedTenant(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(erasedKey{}).(string)
	return id, ok
}

// admit turns the status policy's verdict into the task's fate.
func admit(env Envelope, tenant tenantctx.Tenant) error {
	switch tenant.Status.Decide(env.Activity) {
	case tenantctx.Run:
		return nil
	case tenantctx.Wait:
		return fmt.Errorf("tenant %s is %s, %s: %w", tenant.ID, tenant.Status, waitReason(env, tenant.Status), ErrTenantNotReady)
	}
	if tenant.Status == tenantctx.StatusDeleting {
		return tenantGone("tenant %s is being deleted: %s task dropped", tenant.ID, env.Type)
	}
	return Permanentf("tenant %s has status %.40q: %s task refused", tenant.ID, tenant.Status, env.Type)
}

// waitReason says what a waiting task waits for.
func waitReason(env Envelope, status tenantctx.Status) string {
	switch {
	case env.Activity == tenantctx.Destruction:
		return env.Type + " runs only once the tenant is marked deleting"
	case status == tenantctx.StatusProvisioning:
		return "waiting for provisioning to finish"
	}
	return "waiting for the tenant to resume"
}

// recheckTimeout bounds droppedIfDeleted's look-up. It runs without the
// task's cancellation (a task often fails because its deadline passed),
// so without a bound of its own a look-up that waits (an exhausted pool, a
// hung PostgreSQL) would hold the chain, and the attempt's report to the
// fair dispatcher, for ever.
const recheckTimeout = 5 * time.Second

// droppedIfDeleted turns the failure of a task whose tenant was deleted (or
// marked deleting) while it ran into a permanent one, its tenant gone
// (tenantGone): its schema or files vanished under it, and a retry could
// only be archived later (P5 in docs/architecture.md); a permanent failure
// (the handler's refusal) likewise, so that the archive writes no record
// of a tenant gone (recordArchive). Any other failure, including a failed
// or timed-out re-check (recheckTimeout), is returned as is. Before it archives the
// task, erased forgets the tenant in the task's queue when the audit log
// records its erasure (forgetErased: the task may be a late enqueue's that
// a stale answer let run); a failure to check or forget is returned, and
// the task retried, also after a permanent failure (the handler's refusal
// no longer archives it: the retry forgets the tenant).
func droppedIfDeleted(ctx context.Context, catalog storage.TenantStore, erased ErasedForgetter, env Envelope, err error) error {
	ctx = context.WithoutCancel(ctx)
	rctx, cancel := context.WithTimeout(ctx, recheckTimeout)
	defer cancel()
	cur, lerr := catalog.TenantByID(rctx, env.TenantID)
	deleted := errors.Is(lerr, storage.ErrNotFound)
	if !deleted && (lerr != nil || cur.Status.Decide(env.Activity) != tenantctx.Refuse) {
		return err
	}
	if ferr := forgetErased(ctx, erased, env); ferr != nil {
		if IsPermanent(err) {
			// Retried all the same: archived, the task would leave the
			// erased tenant's state in Redis with nothing to forget it.
			return fmt.Errorf("%w (after: %v)", ferr, err)
		}
		return fmt.Errorf("%w (after: %w)", ferr, err)
	}
	if deleted {
		return tenantGone("tenant %s was deleted while the %s task ran (%v)", env.TenantID, env.Type, err)
	}
	return tenantGone("tenant %s is being deleted: %s task dropped (%v)", env.TenantID, env.Type, err)
}
