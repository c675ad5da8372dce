package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// deleteAfterSwitch is a catalog whose first placement change is saved
// but not published (storage.ErrInvalidationFailed, as with Redis gone),
// and runs del once it is saved: a deletion request landing after a
// move's switch, before the move hands its hold over to an operator's
// pause.
type deleteAfterSwitch struct {
	storage.Catalog
	once sync.Once
	del  func()
}

func (c *deleteAfterSwitch) SetPlacement(ctx context.Context, id, from, to string, generation int64) (tenantctx.Tenant, error) {
	t, err := c.Catalog.SetPlacement(ctx, id, from, to, generation)
	first := false
	c.once.Do(func() { first = true })
	if err != nil || !first {
		return t, err
	}
	c.del()
	return t, fmt.Errorf("%w: injected", storage.ErrInvalidationFailed)
}

// deleteAfterPauseRecord is a catalog whose first write of a pause's
// record saying paused (SetQueuePaused) runs del once it is saved: a whole
// deletion request landing between the record of the pause a move (or the
// workers' stale-move check) keeps and that pause's hold.
type deleteAfterPauseRecord struct {
	storage.Catalog
	once sync.Once
	ran  bool
	del  func()
}

func (c *deleteAfterPauseRecord) SetQueuePaused(ctx context.Context, id string, paused bool) error {
	err := c.Catalog.SetQueuePaused(ctx, id, paused)
	if err == nil && paused {
		c.once.Do(func() {
			c.ran = true
			c.del()
		})
	}
	return err
}

// requestDeletion returns a hook that requests tn's deletion through b's
// own service (another process's) and stores the destroy's task id.
func requestDeletion(t *testing.T, b *moveLoss, tn tenantctx.Tenant, taskID *string) func() {
	return func() {
		d, err := b.svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin)
		if err != nil {
			t.Errorf("the deletion request: %v", err)
			return
		}
		*taskID = d.TaskID
	}
}

// checkDestroyNotHeld fails t unless tn is being deleted and nothing holds
// its work: no operator's pause in any queue, none recorded in the catalog
// (the workers would put it back after a loss of Redis's data), no move's
// hold, and its tenant:destroy (taskID) is in asynq after a worker's
// heartbeat, for a worker to run.
func checkDestroyNotHeld(t *testing.T, b *moveLoss, tn tenantctx.Tenant, taskID string) {
	t.Helper()
	if taskID == "" {
		t.Fatal("the deletion request gave no destroy task")
	}
	if cur, err := b.catalog.TenantByID(b.ctx, tn.ID); err != nil || cur.Status != tenantctx.StatusDeleting {
		t.Fatalf("the tenant: %+v, %v; want it deleting", cur, err)
	}
	checkRecordFollowsRedis(t, b.lossBundle, tn.ID, false)
	for _, q := range b.queue(t, tn.ID).Queues {
		if q.Paused || q.Moving {
			t.Errorf("queue %s of the deleting tenant: paused %v, moving %v; want neither: it holds the tenant:destroy", q.Queue, q.Paused, q.Moving)
		}
	}
	b.beat(t)
	info, err := b.inspector.GetTaskInfo(tasks.QueueCritical, taskID)
	if err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("the tenant:destroy %s: %+v, %v; want it pending in asynq, for a worker to run", taskID, info, err)
	}
}

// TestMoveDoesNotKeepPausedATenantDeletedAfterItsSwitch: a move whose
// switch is saved but not propagated keeps the tenant's queue paused, as
// an operator's pause. When the tenant's deletion is requested after the
// switch (the deletion request lifts the tenant's holds and clears its
// pause's record), that pause is not made: it would hold the tenant's
// tenant:destroy, and the deletion would never complete without an
// operator's resume (PauseQueue refuses a tenant being deleted for the
// same reason).
func TestMoveDoesNotKeepPausedATenantDeletedAfterItsSwitch(t *testing.T) {
	t.Parallel()
	b := setupMoveLoss(t)
	tn := b.onMain(t, "movedel-switch")
	b.beat(t)
	var taskID string
	c := &deleteAfterSwitch{Catalog: b.catalog, del: requestDeletion(t, b, tn, &taskID)}
	_, err := b.service(c).Move(b.ctx, tn.ID, "second", "test", fastMove)
	if !errors.Is(err, storage.ErrInvalidTransition) || strings.Contains(err.Error(), "queue stays paused") {
		t.Errorf("Move of a tenant whose switch was not propagated and whose deletion was requested then: %v; "+
			"want the deletion's refusal, not that its queue stays paused", err)
	}
	checkDestroyNotHeld(t, b, tn, taskID)
}

// TestMoveKeepingItsQueuePausedLiftsItForADeletionMeanwhile: a move whose
// switch is not propagated keeps the tenant's queue paused. A deletion
// request that runs whole between the move's record of that pause and its
// hold (it clears the record and lifts the holds, then enqueues the
// destroy, before the pause is made) does not leave the deleting tenant
// paused: the move lifts its pause again, as PauseQueue does, and the
// tenant:destroy runs.
func TestMoveKeepingItsQueuePausedLiftsItForADeletionMeanwhile(t *testing.T) {
	t.Parallel()
	b := setupMoveLoss(t)
	tn := b.onMain(t, "movedel-handover")
	b.beat(t)
	var taskID string
	c := &deleteAfterPauseRecord{Catalog: unpropagatedPlacement{b.catalog}, del: requestDeletion(t, b, tn, &taskID)}
	_, err := b.service(c).Move(b.ctx, tn.ID, "second", "test", fastMove)
	if !errors.Is(err, storage.ErrInvalidationFailed) {
		t.Fatalf("Move without propagation: %v, want ErrInvalidationFailed", err)
	}
	if !c.ran {
		t.Fatal("the move recorded no pause: the deletion request did not run")
	}
	checkDestroyNotHeld(t, b, tn, taskID)
}

// TestStaleMoveCheckDoesNotPauseATenantDeletedMeanwhile: a move whose
// switch was not propagated because Redis went away left only its own
// hold; once Redis is back the workers' stale-move check hands it over to
// an operator's pause. A deletion request that runs whole between the
// check's record of that pause and its hold does not leave the deleting
// tenant paused: the check lifts the pause again and the move's hold goes,
// so the tenant:destroy runs.
func TestStaleMoveCheckDoesNotPauseATenantDeletedMeanwhile(t *testing.T) {
	t.Parallel()
	b := setupMoveLoss(t)
	tn := b.staleMove(t, "movedel-stale")
	var taskID string
	c := &deleteAfterPauseRecord{Catalog: b.catalog, del: requestDeletion(t, b, tn, &taskID)}
	if _, err := b.service(c).ReleaseStaleMoves(b.ctx); err != nil {
		t.Fatal(err)
	}
	if !c.ran {
		t.Fatal("the stale-move check recorded no pause: the deletion request did not run")
	}
	checkDestroyNotHeld(t, b, tn, taskID)
}

// TestMoveProgressSaysTheQueueRunsForADeletion: a move whose switch was
// not propagated and whose tenant's deletion was requested after the
// switch does not keep the queue paused (so that the tenant:destroy
// runs), and its progress ends saying so: it ended with "keep the queue
// paused", which an operator watching the move took at its word while
// the queue ran.
func TestMoveProgressSaysTheQueueRunsForADeletion(t *testing.T) {
	t.Parallel()
	b := setupMoveLoss(t)
	tn := b.onMain(t, "movedel-progress")
	b.beat(t)
	var taskID string
	c := &deleteAfterSwitch{Catalog: b.catalog, del: requestDeletion(t, b, tn, &taskID)}
	var steps []string
	opts := fastMove
	opts.Progress = func(step string) { steps = append(steps, step) }
	if _, err := b.service(c).Move(b.ctx, tn.ID, "second", "test", opts); !errors.Is(err, storage.ErrInvalidTransition) {
		t.Fatalf("set-up: Move = %v; want the deletion's refusal after the switch", err)
	}
	checkDestroyNotHeld(t, b, tn, taskID)
	if len(steps) == 0 || !strings.HasPrefix(steps[len(steps)-1], "resume the queue") {
		t.Errorf("progress %q; want it to end resuming the queue, which runs for the tenant's destroy", steps)
	}
}
