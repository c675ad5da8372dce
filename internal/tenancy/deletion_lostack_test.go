package tenancy_test

import (
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDeletionRequestWithLostCommitAckEnqueuesTheDestroy: a deletion
// request whose marking of the tenant committed but whose answer was lost
// (the server restarted, or its backend was terminated, after the
// commit) reads the tenant back, finds it deleting, and completes: its
// destroy is enqueued and the request recorded with the status the
// tenant came from. Before, it failed with the tenant marked deleting,
// its work refused and its data kept, and no destroy queued; only a
// retry by the caller enqueued it, recording the request as made from
// "deleting".
func TestDeletionRequestWithLostCommitAckEnqueuesTheDestroy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "lostdeletion")
	lost := tenancy.New(tenancy.Config{Catalog: lostStatusAcks(b.catalog, false), Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	d, err := lost.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Errorf("RequestDeletion whose marking committed, its answer lost: %v; want the deletion completed", err)
	}
	if cur, err := b.catalog.TenantByID(b.ctx, tn.ID); err != nil || cur.Status != tenantctx.StatusDeleting {
		t.Fatalf("after the request: %+v, %v; want deleting (the marking committed)", cur, err)
	}
	destroy := tasks.TenantDestroy{TenantID: tn.ID}.Spec().TaskID
	if d.TaskID != destroy {
		t.Errorf("the request's destroy task %q, want %q", d.TaskID, destroy)
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, destroy); err != nil {
		t.Errorf("the tenant is deleting and its destroy is not queued: %v", err)
	}
	// The caller's retry, had it got an error, records nothing new.
	if _, err := b.svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	froms := b.deletionRequestedFrom(t, tn.ID)
	if len(froms) != 1 || froms[0] != string(tenantctx.StatusActive) {
		t.Errorf("tenant.deletion_requested entries from %q, want one from active", froms)
	}
}
