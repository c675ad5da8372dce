package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Audit actions of a tenant's queue and limits.
const (
	// ActionQueuePaused: an operator paused the tenant's backlog
	// {moved_back}.
	ActionQueuePaused Action = "tenant.queue_paused"
	// ActionQueueResumed: an operator resumed it.
	ActionQueueResumed Action = "tenant.queue_resumed"
	// ActionQueueDrained: an operator discarded it {waiting, admitted,
	// parked}.
	ActionQueueDrained Action = "tenant.queue_drained"
	// ActionLimitsChanged: the tenant's plan or limits changed {plan,
	// limits}.
	ActionLimitsChanged Action = "tenant.limits_changed"
)

// Queue is a tenant's work in fair dispatch.
type Queue struct {
	TenantID string `json:"tenant_id"`
	// Policy is what the tenant's plan and limits give it per queue.
	Policy fair.Policy `json:"policy"`
	// Waiting, Admitted, Running and Parked sum the queues.
	Waiting  int `json:"waiting"`
	Admitted int `json:"admitted"`
	Running  int `json:"running"`
	Parked   int `json:"parked"`
	// WaitingByType sums the backlog by task type.
	WaitingByType map[string]int `json:"waiting_by_type"`
	// OldestWaitSeconds is how long the oldest waiting task has waited.
	OldestWaitSeconds float64 `json:"oldest_wait_seconds"`
	// Paused is true while an operator's pause holds the backlog;
	// Suspended while the tenant's suspension does.
	Paused    bool `json:"paused"`
	Suspended bool `json:"suspended"`
	// PausedInAsynq is true while one of the queues is paused in asynq
	// itself (the dashboard's pause): none of its tasks run, any tenant's
	// (fair.QueueStats.PausedInAsynq says which).
	PausedInAsynq bool `json:"paused_in_asynq"`
	// Queues are the per-queue figures of the queues the tenant's tasks
	// can be in (with queue shards, its shard of each class). A queue's
	// policy is the one its last enqueue or limits change carried there,
	// or Policy where neither did yet (its next enqueue brings that).
	Queues []fair.QueueStats `json:"queues"`
}

// Queue returns the tenant's backlog, admitted and running tasks by queue
// (the tenant's queues: tasks.Layout.TenantQueues) and type, and the
// oldest wait. ErrNoDispatch without fair dispatch.
func (s *Service) Queue(ctx context.Context, id string) (Queue, error) {
	t, err := s.dispatchTenant(ctx, id)
	if err != nil {
		return Queue{}, err
	}
	var stats []fair.QueueStats
	err = s.bounded(ctx, id, "queue of tenant", func(ctx context.Context) (err error) {
		stats, err = s.fair.Stats(ctx, id, s.layout().TenantQueues(id)...)
		return err
	})
	if err != nil {
		return Queue{}, fmt.Errorf("queue of tenant %s: %w", id, err)
	}
	q := Queue{TenantID: id, Queues: stats, WaitingByType: map[string]int{}}
	q.Policy = s.Policy(t)
	var oldest time.Duration
	for i, st := range stats {
		if st.Policy.Weight == 0 {
			// No policy recorded in this queue yet: the tenant's next
			// enqueue there brings its policy now (SetLimits leaves such
			// a queue alone), so that is what applies, not "no caps".
			stats[i].Policy = q.Policy
		}
		q.Waiting += st.Waiting
		q.Admitted += st.Admitted
		q.Running += st.Running
		q.Parked += st.Parked
		for typ, n := range st.WaitingByType {
			q.WaitingByType[typ] += n
		}
		oldest = max(oldest, st.OldestWait)
		q.Paused = q.Paused || st.Paused
		q.Suspended = q.Suspended || st.Suspended
		q.PausedInAsynq = q.PausedInAsynq || st.PausedInAsynq
	}
	q.OldestWaitSeconds = oldest.Seconds()
	return q, nil
}

// MaxQueuesTop bounds how many of a queue's largest backlogs Queues names.
const MaxQueuesTop = 100

// Queues returns the overview of every served queue (tasks.Layout.Queues:
// every shard of every class), each with its k largest tenant backlogs (k
// from 1 to MaxQueuesTop). ErrNoDispatch without fair dispatch.
func (s *Service) Queues(ctx context.Context, k int) ([]fair.Overview, error) {
	if s.fair == nil {
		return nil, ErrNoDispatch
	}
	queues := s.layout().Queues()
	var out []fair.Overview
	err := s.bounded(ctx, "", "queues", func(ctx context.Context) error {
		all := make([]fair.Overview, 0, len(queues))
		for _, q := range queues {
			o, err := s.fair.Overview(ctx, q, k)
			if err != nil {
				return err
			}
			all = append(all, o)
		}
		out = all
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queues: %w", err)
	}
	return out, nil
}

// PauseQueue holds the tenant's backlog in every queue, every shard (its migrations
// too: a paused tenant changes nothing) until ResumeQueue; tasks admitted
// but not started go back to its backlog, tasks already running finish.
// It returns how many went back and writes ActionQueuePaused. Of a pause
// and a ResumeQueue that race (from two services), the one that changed
// the first queue last holds in every queue (settlePause).
//
// The pause is recorded in the catalog (storage.PauseStore) before the
// hold is made, and the record follows the outcome, also of a race
// (settlePause): the workers put the hold back from it when Redis lost
// its data (Holds).
//
// A tenant being deleted is refused (ErrRefused): a pause would hold its
// tenant:destroy. Should the deletion be requested while the pause is
// being made, the pause is lifted again, so the destroy runs either way.
// A tenant still being provisioned is refused too (ErrNotReady): a pause
// would hold its tenant:migrate, and the tenant would stay provisioning
// until a ResumeQueue; its other work waits for it to be active anyway. A
// tenant never goes back to provisioning, so no pause made after the check
// can hold a migration that activates it.
func (s *Service) PauseQueue(ctx context.Context, id, actor string) (int, error) {
	t, err := s.liveDispatchTenant(ctx, id, "pause")
	if err != nil {
		return 0, err
	}
	if t.Status == tenantctx.StatusProvisioning {
		return 0, fmt.Errorf("pause queue of tenant %s: %w: tenant is provisioning (its tenant:migrate would be held)", id, ErrNotReady)
	}
	var moved int
	err = s.bounded(ctx, id, "pause queue: hold its backlog", func(ctx context.Context) (err error) {
		// Recorded first: a hold Redis loses is put back from the record.
		if err := s.catalog.SetQueuePaused(ctx, id, true); err != nil {
			return fmt.Errorf("record the pause: %w", err)
		}
		moved, err = s.fair.Hold(ctx, id, fair.Paused, s.holdQueues(id)...)
		if err != nil {
			s.unrecordRefusedPause(ctx, id)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pause queue of tenant %s: %w", id, err)
	}
	// Held: settle a racing resume, check and record it.
	err = s.complete(ctx, id, "pause queue: check and record it", func(ctx context.Context) error {
		if err := s.settlePause(ctx, id); err != nil {
			return fmt.Errorf("pause queue of tenant %s: %w", id, err)
		}
		if err := s.unpauseDeleted(ctx, id, "pause"); err != nil {
			return err
		}
		s.logFailure(ctx, id, ActionQueuePaused, s.audit(ctx, id, actor, ActionQueuePaused, map[string]int{"moved_back": moved}))
		return nil
	})
	if errors.Is(err, ErrStillCompleting) {
		return moved, fmt.Errorf("pause queue of tenant %s: %w", id, err)
	}
	if err != nil {
		return 0, err
	}
	return moved, nil
}

// ResumeQueue lifts an operator's pause: the backlog is admitted again, in
// order (a suspended tenant's work stays held until it resumes), and the
// pause's record in the catalog is cleared once the hold is released (or
// kept, should a racing PauseQueue win: settlePause). It writes
// ActionQueueResumed. A racing PauseQueue is settled as PauseQueue
// says.
//
// A tenant being deleted is refused (ErrRefused), as PauseQueue and
// DrainQueue refuse it: its deletion request discarded its backlog and
// lifted its holds, its pause's record with them, so there is nothing of
// a tenant being erased to release (a deletion request that failed part
// way is completed by requesting it again).
func (s *Service) ResumeQueue(ctx context.Context, id, actor string) error {
	if _, err := s.liveDispatchTenant(ctx, id, "resume"); err != nil {
		return err
	}
	if err := s.bounded(ctx, id, "resume queue: release its backlog", func(ctx context.Context) error {
		_, err := s.fair.Release(ctx, id, fair.Paused, s.holdQueues(id)...)
		return err
	}); err != nil {
		return fmt.Errorf("resume queue of tenant %s: %w", id, err)
	}
	// Released: settle a racing pause, record it.
	if err := s.complete(ctx, id, "resume queue: record it", func(ctx context.Context) error {
		if err := s.settlePause(ctx, id); err != nil {
			return err
		}
		s.logFailure(ctx, id, ActionQueueResumed, s.audit(ctx, id, actor, ActionQueueResumed, map[string]string{}))
		return nil
	}); err != nil {
		return fmt.Errorf("resume queue of tenant %s: %w", id, err)
	}
	return nil
}

// unrecordRefusedPause makes the pause's record follow the first queue's
// hold after PauseQueue's hold failed: a Redis that refuses writes and
// answers reads (at maxmemory with noeviction, a replica, a master short
// of replicas) made no hold, and the record written before it would
// otherwise stay, so that once Redis lost its data the refused pause would
// be made from it (a racing call's change is read under the tenant's lock,
// as settlePause's record is). A hold whose outcome cannot be read (Redis
// not answering) keeps the record: the hold may have been made.
func (s *Service) unrecordRefusedPause(ctx context.Context, id string) {
	first := s.holdQueues(id)[0]
	_, err := s.catalog.SyncQueuePaused(ctx, id, func(ctx context.Context) (bool, error) {
		return s.fair.HeldFor(ctx, id, fair.Paused, first)
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.logger.WarnContext(ctx, "pause queue: the hold failed and its record could not be checked against redis; it stays until the tenant is paused or resumed again",
			slog.String("tenant_id", id), slog.String("error", err.Error()))
	}
}

// pauseSettleRounds bounds settlePause's rounds: each one follows a pause
// or resume that another call made meanwhile.
const pauseSettleRounds = 10

// settlePause makes the operator's pause of the tenant's queues agree,
// after the caller paused or resumed them all. A pause and a resume that
// race hold and release the queues one by one, and would leave some
// paused and the others running, while the tenant's queue answers
// "paused". The first queue decides: every call changes it first, so the
// one that changed it last wins; the others follow it, until it reads the
// same before and after they did (a call that changed it since settles
// again, and so does this one). The pause's record in the catalog then
// follows it too: it is written as the first queue reads while the
// tenant's record is locked (storage.PauseStore.SyncQueuePaused), so of
// racing calls the write saved last is the one that read last, which
// reads the state after the last change, whatever order their writes
// would have landed in. A call whose write finds the first queue changed
// again records that: the call that changed it settles after it.
func (s *Service) settlePause(ctx context.Context, id string) error {
	queues := s.holdQueues(id)
	paused, err := s.fair.HeldFor(ctx, id, fair.Paused, queues[0])
	if err != nil {
		return fmt.Errorf("settle its pause: %w", err)
	}
	for range pauseSettleRounds {
		if paused {
			_, err = s.fair.Hold(ctx, id, fair.Paused, queues[1:]...)
		} else {
			_, err = s.fair.Release(ctx, id, fair.Paused, queues[1:]...)
		}
		if err != nil {
			return fmt.Errorf("settle its pause: %w", err)
		}
		now, err := s.fair.HeldFor(ctx, id, fair.Paused, queues[0])
		if err != nil {
			return fmt.Errorf("settle its pause: %w", err)
		}
		if now == paused {
			// The record follows the first queue as read under the
			// tenant's lock in the catalog, not this call's reading:
			// a call that changed it since may have written its record
			// already, and this write must not land over that one. A
			// tenant deleted meanwhile took its record with it.
			_, err := s.catalog.SyncQueuePaused(ctx, id, func(ctx context.Context) (bool, error) {
				return s.fair.HeldFor(ctx, id, fair.Paused, queues[0])
			})
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("settle its pause: record it: %w", err)
			}
			return nil
		}
		paused = now
	}
	return fmt.Errorf("settle its pause: paused and resumed again %d times meanwhile; pause or resume again", pauseSettleRounds)
}

// DrainQueue discards the tenant's tasks that have not started (waiting,
// admitted but pending, parked, and in asynq's retry and scheduled sets
// when the dispatcher knows its task ids, fair.Config.TaskIDs) in every
// queue and returns the counts;
// running tasks finish. Nothing of another tenant is touched. It writes
// ActionQueueDrained.
//
// A tenant being deleted is refused (ErrRefused): its backlog holds the
// tenant:destroy that erases it. Should the deletion be requested while
// the drain runs, the destroy is enqueued again (its task id is the
// tenant's, so it is never there twice). A tenant still being provisioned
// is refused too (ErrNotReady): the drain would discard its tenant:migrate,
// and the tenant would stay provisioning until POST /admin/migrations; its
// other work waits for it to be active anyway. A tenant never goes back to
// provisioning, so no drain that passed the check discards a migration
// that activates it. An active or suspended tenant's waiting
// tenant:migrate (a schema upgrade of migrate --all) is discarded with the
// rest, and counted: enqueue it again (POST /admin/migrations).
func (s *Service) DrainQueue(ctx context.Context, id, actor string) (fair.Drained, error) {
	t, err := s.liveDispatchTenant(ctx, id, "drain")
	if err != nil {
		return fair.Drained{}, err
	}
	if t.Status == tenantctx.StatusProvisioning {
		return fair.Drained{}, fmt.Errorf("drain queue of tenant %s: %w: tenant is provisioning (its tenant:migrate would be discarded)", id, ErrNotReady)
	}
	var n fair.Drained
	err = s.bounded(ctx, id, "drain queue: discard its backlog", func(ctx context.Context) (err error) {
		n, err = s.fair.Drain(ctx, id, s.layout().Queues()...)
		return err
	})
	if errors.Is(err, errStillRunning) {
		return fair.Drained{}, fmt.Errorf("drain queue of tenant %s: %w", id, err)
	}
	if err != nil {
		return n, fmt.Errorf("drain queue of tenant %s: %w", id, err)
	}
	// Discarded: check and record it.
	err = s.complete(ctx, id, "drain queue: check and record it", func(ctx context.Context) error {
		if err := s.deletedMeanwhile(ctx, id, "drain"); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return err // erased already: no destroy to bring back
			}
			if _, eerr := s.enqueuer.Enqueue(ctx, tasks.TenantDestroy{TenantID: id}); eerr != nil {
				return fmt.Errorf("drain queue of tenant %s: enqueue its destroy again: %w", id, eerr)
			}
			return err
		}
		s.logFailure(ctx, id, ActionQueueDrained, s.audit(ctx, id, actor, ActionQueueDrained, n))
		return nil
	})
	if errors.Is(err, ErrStillCompleting) {
		return n, fmt.Errorf("drain queue of tenant %s: %w", id, err)
	}
	return n, err
}

// SetLimits changes the tenant's plan (empty keeps it) and its limits,
// which override the plan's share and caps (tenantctx.Limits; zero fields
// mean the plan's). New enqueues use them at once, and so does the
// tenant's backlog in every queue where it has one (fair.Dispatcher.SetPolicy).
// It writes ActionLimitsChanged. Errors: storage.ErrNotFound,
// ErrUnknownPlan for a plan this process has no policy for, ErrRefused
// for a tenant being deleted (also one whose deletion is requested while
// the limits change: the catalog then changes nothing), tenantctx.ErrInvalidLimits, or
// storage.ErrInvalidationFailed (with the tenant) when the change is saved
// but other processes may use the old limits until their cache entry
// expires, or the dispatcher could not be told (its queues keep the old
// policy until the tenant's next enqueue); repeating the call is safe.
func (s *Service) SetLimits(ctx context.Context, id, plan string, l tenantctx.Limits, actor string) (tenantctx.Tenant, error) {
	if err := s.checkPlan(plan); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set limits of tenant %s: %w", id, err)
	}
	t, err := s.catalog.TenantByID(ctx, id)
	if err != nil {
		return t, fmt.Errorf("set limits of tenant %s: %w", id, err)
	}
	if err := refuseDeleting(t, "set limits of"); err != nil {
		return t, err
	}
	t, err = s.catalog.SetLimits(ctx, id, plan, l)
	if errors.Is(err, storage.ErrTenantDeleting) {
		// The deletion was requested after the check above: the catalog
		// changed nothing.
		return t, fmt.Errorf("set limits of tenant %s: %w: %w", id, ErrRefused, err)
	}
	if err != nil && !errors.Is(err, storage.ErrInvalidationFailed) {
		return t, fmt.Errorf("set limits of tenant %s: %w", id, err)
	}
	// Saved (perhaps not yet propagated: the error says so after the
	// entry): record it, tell the dispatcher.
	cerr := s.complete(ctx, id, "set limits: record them, tell the dispatcher", func(ctx context.Context) error {
		detail := map[string]any{"plan": t.Plan, "limits": t.Limits}
		s.logFailure(ctx, id, ActionLimitsChanged, s.audit(ctx, id, actor, ActionLimitsChanged, detail))
		// The dispatcher keeps the policy of a tenant's last enqueue:
		// without this, a tenant with a backlog that enqueues nothing more
		// would keep its old weight and caps until the backlog is gone.
		if s.fair != nil && s.plans != nil {
			if perr := s.settlePolicy(ctx, id, t); perr != nil {
				return fmt.Errorf("%w: the tenant's queues keep the old policy: %w", storage.ErrInvalidationFailed, perr)
			}
		}
		return nil
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return t, fmt.Errorf("set limits of tenant %s: %w", id, err)
	}
	return t, nil
}

// settlePolicy tells the dispatcher the policy of t, the tenant as a
// limits change saved it, then reads the tenant again and repeats with
// what the catalog holds now until the two agree: of two limits changes
// that race (from two services), the one saved last may tell the
// dispatcher first, and the other's older policy must not stay in force.
// A failed read changes nothing: the policy told matched the change this
// call saved. Each policy told carries its row's version
// (fair.PolicyVersion), so that an enqueue on its way with the tenant as
// it was before does not put the older policy back.
func (s *Service) settlePolicy(ctx context.Context, id string, t tenantctx.Tenant) error {
	for range statusAttempts {
		p := s.plans.PolicyOf(t)
		p.Version = fair.PolicyVersion(t)
		if err := s.fair.SetPolicy(ctx, id, p, s.layout().Queues()...); err != nil {
			return err
		}
		cur, err := s.catalog.TenantByID(ctx, id)
		if err != nil || s.plans.PolicyOf(cur) == s.plans.PolicyOf(t) {
			return nil
		}
		t = cur
	}
	return fmt.Errorf("the limits changed again %d times meanwhile", statusAttempts)
}

// ResetPolicies gives every tenant's queues (all but those of a tenant
// being deleted) the policy of its catalog row as it is now, also where a
// policy of a later version is recorded (fair.Dispatcher.ResetPolicy):
// after the catalog was restored from a backup its rows' versions went
// back, and the queues would keep the policies of before the restore until
// each tenant's row changed again. A tenant whose row changes while its
// policy is reset gets the changed row's policy (settlePolicy). It returns
// how many tenants it reset, also with an error, which stops it
// (storage.ErrNotFound for a tenant erased meanwhile skips it);
// ErrNoDispatch without fair dispatch. docs/operations.md ("Restoring the
// catalog from a backup") says when to run it.
func (s *Service) ResetPolicies(ctx context.Context) (int, error) {
	if s.fair == nil || s.plans == nil {
		return 0, ErrNoDispatch
	}
	n := 0
	opts := storage.ListOptions{Limit: storage.MaxPageSize}
	for {
		page, err := s.catalog.ListTenants(ctx, opts)
		if err != nil {
			return n, fmt.Errorf("reset policies: list tenants after %q: %w", opts.After, err)
		}
		for _, t := range page {
			if t.Status == tenantctx.StatusDeleting {
				continue
			}
			p := s.plans.PolicyOf(t)
			p.Version = fair.PolicyVersion(t)
			if err := s.fair.ResetPolicy(ctx, t.ID, p, s.layout().Queues()...); err != nil {
				return n, fmt.Errorf("reset policies: %w", err)
			}
			// A limits change saved since the page was read told its
			// policy, which the reset may have replaced: the row's
			// policy now goes again, as a change's would.
			cur, err := s.catalog.TenantByID(ctx, t.ID)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return n, fmt.Errorf("reset policies: tenant %s: %w", t.ID, err)
			}
			if !cur.UpdatedAt.Equal(t.UpdatedAt) {
				if err := s.settlePolicy(ctx, t.ID, cur); err != nil {
					return n, fmt.Errorf("reset policies: tenant %s: %w", t.ID, err)
				}
			}
			n++
		}
		if len(page) < opts.PageLimit() {
			return n, nil
		}
		opts.After = page[len(page)-1].ID
	}
}

// Policy returns what t's plan and limits give it per queue (the
// configured plans'); the zero Policy without plans configured.
func (s *Service) Policy(t tenantctx.Tenant) fair.Policy {
	if s.plans == nil {
		return fair.Policy{}
	}
	return s.plans.PolicyOf(t)
}

// liveDispatchTenant is dispatchTenant for an operation a tenant being
// deleted must not get (op names it in the error): ErrRefused for one.
func (s *Service) liveDispatchTenant(ctx context.Context, id, op string) (tenantctx.Tenant, error) {
	t, err := s.dispatchTenant(ctx, id)
	if err != nil {
		return t, err
	}
	return t, refuseDeleting(t, op+" queue of")
}

// unpauseDeleted checks that tenant id is not being deleted
// (deletedMeanwhile; op names the operation in the error) once an
// operator's pause of its queues was made and settled (by PauseQueue, or
// by a move keeping its queue paused: keepQueuePaused, which also checks
// before it makes one). If it is, it lifts the pause (again) and clears
// its record, and returns the ErrRefused: the deletion request lifted the
// holds and cleared the record when it was made, and a pause made after
// that would hold the tenant's tenant:destroy until an operator's resume.
// A deletion requested after the check lifts the pause itself.
func (s *Service) unpauseDeleted(ctx context.Context, id, op string) error {
	err := s.deletedMeanwhile(ctx, id, op)
	if err == nil {
		return nil
	}
	if _, rerr := s.fair.Release(ctx, id, fair.Paused, s.holdQueues(id)...); rerr != nil {
		return fmt.Errorf("%s queue of tenant %s: lift the pause again: %w", op, id, rerr)
	}
	if rerr := s.catalog.SetQueuePaused(ctx, id, false); rerr != nil && !errors.Is(rerr, storage.ErrNotFound) {
		return fmt.Errorf("%s queue of tenant %s: clear its record: %w", op, id, rerr)
	}
	return err
}

// deletedMeanwhile returns ErrRefused when the tenant is now being deleted
// (or gone: then it wraps storage.ErrNotFound too): an operation checked
// by liveDispatchTenant raced with a deletion request and must undo what
// would stop the destroy.
func (s *Service) deletedMeanwhile(ctx context.Context, id, op string) error {
	t, err := s.catalog.TenantByID(ctx, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%s queue of tenant %s: %w: tenant deleted meanwhile: %w", op, id, ErrRefused, err)
	case err != nil:
		return nil // the check before passed; a read error is no evidence of a deletion
	}
	return refuseDeleting(t, op+" queue of")
}

// refuseDeleting returns ErrRefused, saying what (op) and why, when the
// status policy refuses t any work (it is being deleted): an operation
// that would stop, discard or change its tenant:destroy, or give it a key.
func refuseDeleting(t tenantctx.Tenant, op string) error {
	if t.Status.Decide(tenantctx.Work) == tenantctx.Refuse {
		return fmt.Errorf("%s tenant %s: %w: tenant is %.40s", op, t.ID, ErrRefused, t.Status)
	}
	return nil
}

// dispatchTenant checks that fair dispatch is on and the tenant exists.
func (s *Service) dispatchTenant(ctx context.Context, id string) (tenantctx.Tenant, error) {
	if s.fair == nil {
		return tenantctx.Tenant{}, ErrNoDispatch
	}
	t, err := s.catalog.TenantByID(ctx, id)
	if err != nil {
		return t, fmt.Errorf("tenant %s: %w", id, err)
	}
	return t, nil
}

// What QueueHold says holds a tenant's tasks.
const (
	HoldPaused = "its queue is paused"
	HoldMoving = "a tenant move holds its queue"
)

// QueueHold says what keeps tenant id's tasks in queue waiting for an
// operator or a move, apart from a suspension (which holds only the
// queues of ordinary work, not a migration's): "its queue is paused" (an
// operator's pause, or one a move kept), "a tenant move holds its queue",
// or "" when neither does, and always without fair dispatch. A task
// waiting for such a hold runs only once it is lifted: `enqueue migrate
// --all --wait` names it instead of leaving the operator to wait out its
// timeout without a reason.
func (s *Service) QueueHold(ctx context.Context, id, queue string) (string, error) {
	if s.fair == nil {
		return "", nil
	}
	for _, h := range []struct {
		reason fair.Reason
		says   string
	}{{fair.Moving, HoldMoving}, {fair.Paused, HoldPaused}} {
		held, err := s.fair.HeldFor(ctx, id, h.reason, queue)
		if err != nil {
			return "", fmt.Errorf("hold of tenant %s in %s: %w", id, queue, err)
		}
		if held {
			return h.says, nil
		}
	}
	return "", nil
}

// Holds returns the holds recorded in the catalog, for fair dispatch to
// put back when Redis lost them (fair.Config.Holds): each suspended
// tenant's in the queues of ordinary work, each operator's pause in every
// queue (a tenant being deleted is left out: its tenant:destroy must
// run). The workers call it only after a loss.
func (s *Service) Holds(ctx context.Context) ([]fair.Holding, error) {
	var out []fair.Holding
	opts := storage.ListOptions{Status: tenantctx.StatusSuspended, Limit: storage.MaxPageSize}
	for {
		page, err := s.catalog.ListTenants(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("holds: suspended tenants: %w", err)
		}
		for _, t := range page {
			out = append(out, fair.Holding{TenantID: t.ID, Reason: fair.Suspended, Queues: s.layout().WorkQueues()})
		}
		if len(page) < opts.PageLimit() {
			break
		}
		opts.After = page[len(page)-1].ID
	}
	paused, err := s.catalog.PausedTenants(ctx)
	if err != nil {
		return nil, fmt.Errorf("holds: %w", err)
	}
	for _, id := range paused {
		t, err := s.catalog.TenantByID(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted meanwhile: its record went with it
		}
		if err != nil {
			return nil, fmt.Errorf("holds: paused tenant %s: %w", id, err)
		}
		if refuseDeleting(t, "hold") != nil {
			continue
		}
		out = append(out, fair.Holding{TenantID: id, Reason: fair.Paused, Queues: s.layout().Queues()})
	}
	return out, nil
}
