package tenancy_test

import (
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/tasks"
)

// TestPauseOfThePreviousReleaseIsRecordedWhenPausedAgain: a tenant paused
// by the previous release (its PauseQueue made the hold only:
// tenancy.queue_pauses is new) has no record, and this release's first
// heartbeat, which puts back the catalog's holds, leaves its hold as Redis
// has it; a loss of Redis's data then lifts that pause, as docs/guarantees.md says
// ("Redis losing part of its data"). Pausing the tenant again records the
// pause, which then survives the next loss.
func TestPauseOfThePreviousReleaseIsRecordedWhenPausedAgain(t *testing.T) {
	t.Parallel()
	b := setupLoss(t)
	tn := b.active(t, "paused-before-upgrade")
	// The previous release's pause: the hold alone.
	if _, err := b.d.Hold(b.ctx, tn.ID, fair.Paused, (tasks.Layout{}).Queues()...); err != nil {
		t.Fatal(err)
	}
	b.beat(t) // this release's first heartbeat: the marker is written
	if q := b.queue(t, tn.ID); !q.Paused {
		t.Fatalf("paused before the loss: %+v", q)
	}
	b.srv.Restart(t) // no persistence: every key is gone
	b.renders(t, tn, 1, 2)
	b.beat(t)
	if ids := b.inAsynq(t, tn); len(ids) != 2 || b.queue(t, tn.ID).Paused {
		t.Fatalf("the unrecorded pause after a loss: in asynq %v, queue %+v; docs/guarantees.md says the loss lifts it", ids, b.queue(t, tn.ID))
	}
	// Paused again under this release: recorded, it survives a loss.
	if _, err := b.svc.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	b.srv.Restart(t)
	b.renders(t, tn, 3, 4)
	b.beat(t)
	if ids := b.inAsynq(t, tn); len(ids) != 0 || !b.queue(t, tn.ID).Paused {
		t.Fatalf("a pause made again after the upgrade, after a loss: in asynq %v, queue %+v", ids, b.queue(t, tn.ID))
	}
}
