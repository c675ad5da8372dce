package tenancy

import (
	"context"
	"errors"
	"fmt"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Suspend moves an active tenant to suspended (suspended again is a
// no-op): its requests are refused and its work waits. With fair dispatch
// its backlog in the work queues is held: nothing of it is admitted, its
// admitted tasks that have not started go back to its backlog, and a task
// a worker dequeued anyway is parked, so a suspended tenant costs no
// handler runs and no retries. Its migrations still run. Any other status
// is storage.ErrInvalidTransition; an unknown id storage.ErrNotFound. A
// change writes ActionStatusChanged.
//
// The status changes first: if the hold then fails (Redis unreachable),
// the error says so, the tenant is suspended and its tasks wait the old
// way (retried every 15-30 s); suspending again completes the hold. A
// change saved whose cache invalidation could not be published returns
// the tenant and an error wrapping storage.ErrInvalidationFailed (so does
// Resume).
//
// A Resume or a deletion request that changed the status between this
// status change and the hold would leave an active (or deleted) tenant's
// work held: after the hold, the status is read again and the hold lifted
// if the tenant is no longer suspended (Resume does the converse).
func (s *Service) Suspend(ctx context.Context, id, actor string) (tenantctx.Tenant, error) {
	t, err := s.changeStatus(ctx, id, tenantctx.StatusActive, tenantctx.StatusSuspended, actor)
	if s.fair == nil || (err != nil && !errors.Is(err, storage.ErrInvalidationFailed)) {
		return t, err
	}
	// Suspended (propagated or not): the hold must follow.
	cerr := s.complete(ctx, id, "suspend tenant: hold its backlog", func(ctx context.Context) error {
		if _, herr := s.fair.Hold(ctx, id, fair.Suspended, s.suspendQueues(id)...); herr != nil {
			return fmt.Errorf("hold its backlog: %w", herr)
		}
		return s.settleSuspendedHold(ctx, id, true)
	})
	if cerr != nil {
		// With the change's own error, if it was not propagated.
		return t, fmt.Errorf("suspend tenant %s: %w", id, errors.Join(err, cerr))
	}
	return t, err
}

// Resume moves a suspended tenant back to active (active again is a
// no-op). A provisioning tenant cannot be resumed: it becomes active only
// when its migrations succeed (Migrate). With fair dispatch its backlog is
// then released, parked tasks at its front, in order. The status changes
// first, so that the released tasks find their tenant active when a
// worker takes them (released first, they would meet the old status and
// wait another 15-30 s). If the release fails, the tenant is active, its
// backlog still held, and the error says so; resuming again (a no-op for
// the status) releases it.
func (s *Service) Resume(ctx context.Context, id, actor string) (tenantctx.Tenant, error) {
	t, err := s.changeStatus(ctx, id, tenantctx.StatusSuspended, tenantctx.StatusActive, actor)
	if s.fair == nil || (err != nil && !errors.Is(err, storage.ErrInvalidationFailed)) {
		return t, err
	}
	// Active: the release must follow.
	cerr := s.complete(ctx, id, "resume tenant: release its backlog", func(ctx context.Context) error {
		if _, rerr := s.fair.Release(ctx, id, fair.Suspended, s.suspendQueues(id)...); rerr != nil {
			return fmt.Errorf("active, but its backlog is still held (resume again): %w", rerr)
		}
		return s.settleSuspendedHold(ctx, id, false)
	})
	if cerr != nil {
		// With the change's own error, if it was not propagated.
		return t, fmt.Errorf("resume tenant %s: %w", id, errors.Join(err, cerr))
	}
	return t, err
}

// settleSuspendedHold makes the suspension's hold follow the tenant's
// status as it is now, after the caller held (held) or released the
// tenant's backlog: held while suspended, lifted otherwise (active, being
// deleted, gone). Of a Suspend and a Resume that race, the one that reads
// the status last leaves the hold matching it. A failed read changes
// nothing: the caller's own change matched the status it wrote.
func (s *Service) settleSuspendedHold(ctx context.Context, id string, held bool) error {
	t, err := s.catalog.TenantByID(ctx, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		t.Status = tenantctx.StatusDeleting // gone: nothing of it may stay held
	case err != nil:
		return nil
	}
	suspended := t.Status == tenantctx.StatusSuspended
	switch {
	case suspended == held:
		return nil
	case suspended:
		if _, err := s.fair.Hold(ctx, id, fair.Suspended, s.suspendQueues(id)...); err != nil {
			return fmt.Errorf("suspended meanwhile, hold its backlog again: %w", err)
		}
	default:
		if _, err := s.fair.Release(ctx, id, fair.Suspended, s.suspendQueues(id)...); err != nil {
			return fmt.Errorf("%s meanwhile, lift the hold again: %w", t.Status, err)
		}
	}
	return nil
}

// outcomeUnknown reports whether a catalog change that failed with err
// may have been saved all the same: the connection to PostgreSQL was lost
// at its commit, or ctx ended while it ran. A refusal of the catalog
// (storage.ErrNotFound, storage.ErrInvalidTransition,
// storage.ErrStatusChanged) or of PostgreSQL, or a connection that was
// never made (notCreated), saved nothing.
func outcomeUnknown(err error) bool {
	for _, target := range []error{storage.ErrNotFound, storage.ErrInvalidTransition, storage.ErrStatusChanged} {
		if errors.Is(err, target) {
			return false
		}
	}
	return !notCreated(err)
}

// statusAttempts bounds how often a status change is tried again when
// another call changed the status between its read and its write.
const statusAttempts = 3

// changeStatus moves the tenant from `from` (or `to` already) to `to`. On
// error the tenant returned is the one found before the change.
//
// The change is a compare-and-set from the status read
// (storage.TenantStore.SetStatusFrom), also when the tenant was `to`
// already: a call that read a status another service has changed since
// (a stale cache, or a change committed between the read and the write)
// reads it again and decides anew, so that every change it writes is
// audited with the status it really came from.
//
// A change whose answer was lost (the connection to PostgreSQL lost at its
// commit) fails; it is recorded if a read of the status finds it saved,
// else by the caller's retry, which finds nothing to change and records
// the change unless the latest one recorded ends in `to` already: once,
// whichever call records it.
func (s *Service) changeStatus(ctx context.Context, id string, from, to tenantctx.Status, actor string) (tenantctx.Tenant, error) {
	t, err := s.catalog.TenantByID(ctx, id)
	if err != nil {
		return t, fmt.Errorf("move tenant to %s: %w", to, err)
	}
	var moved tenantctx.Tenant
	for attempt := 1; ; attempt++ {
		if t.Status != from && t.Status != to {
			return t, fmt.Errorf("move tenant %s from %s to %s: %w", id, t.Status, to, storage.ErrInvalidTransition)
		}
		// Only from the status read: of two calls that read the same
		// status, one changes it and records the change. No change (t is
		// `to` already) is saved again, and propagated again.
		moved, err = s.catalog.SetStatusFrom(ctx, id, t.Status, to)
		if !errors.Is(err, storage.ErrStatusChanged) {
			break
		}
		if moved.Status == to && t.Status != to {
			// Another call made this change and recorded it. It is saved
			// again all the same (a no-op), for its propagation: this call
			// may be the retry of one whose invalidation failed, which
			// read the old status from a cache entry that failure left.
			t = moved
			continue
		}
		if attempt >= statusAttempts || (moved.Status != from && moved.Status != to) {
			return t, fmt.Errorf("move tenant %s from %s to %s: %w: %w", id, moved.Status, to, storage.ErrInvalidTransition, err)
		}
		t = moved // changed since the read: decide again on what it is now
	}
	// Saved but not propagated (storage.ErrInvalidationFailed): the change
	// happened and is audited, and the error is returned, because other
	// processes may still serve the old status (docs/architecture.md, P18).
	notPropagated := errors.Is(err, storage.ErrInvalidationFailed)
	if err != nil && !notPropagated {
		err = fmt.Errorf("move tenant %s to %s: %w", id, to, err)
		if outcomeUnknown(err) && t.Status != to {
			// The connection was lost at the change's commit (or ctx
			// ended while it ran): it may be saved. If it is, it is
			// recorded now, else by the caller's retry, which finds
			// nothing to change (below); once, whichever records it.
			ctx, cancel := completing(ctx)
			defer cancel()
			if cur, rerr := s.catalog.TenantByID(ctx, id); rerr == nil && cur.Status == to {
				s.logFailure(ctx, id, ActionStatusChanged, s.recordStatusChange(ctx, id, actor, t.Status, to))
			}
		}
		return t, err
	}
	ctx, cancel := completing(ctx) // saved: record it
	defer cancel()
	if t.Status != to {
		s.logFailure(ctx, id, ActionStatusChanged, s.recordStatusChange(ctx, id, actor, t.Status, to))
	} else {
		// Nothing to change: but this call may be the retry of one whose
		// change committed and whose answer was lost, which recorded
		// nothing. The change is recorded unless the latest one recorded
		// ends here already.
		s.logFailure(ctx, id, ActionStatusChanged, s.recordStatusReached(ctx, id, actor, from, to))
	}
	if notPropagated {
		return moved, fmt.Errorf("move tenant %s to %s: %w", id, to, err)
	}
	return moved, nil
}
