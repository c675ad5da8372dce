package tenancy_test

import (
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestQueueViewShowsThePolicyThatWillApply: in a queue where the tenant
// has no state yet (here `low`: it never enqueued a reminder), the view's
// per-queue policy is the one its next enqueue there will carry (its plan
// and limits), not an uncapped {1,0,0}, also right after PUT .../limits.
func TestQueueViewShowsThePolicyThatWillApply(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "view-policy")
	b.pdfs(t, tn, 2)
	check := func(when string, want fair.Policy) {
		t.Helper()
		q := b.queue(t, tn.ID)
		if q.Policy != want {
			t.Fatalf("%s: tenant policy %+v, want %+v", when, q.Policy, want)
		}
		for _, s := range q.Queues {
			if s.Policy != want {
				t.Errorf("%s: queue %s shows policy %+v, want %+v (what applies to its next admission there)", when, s.Queue, s.Policy, want)
			}
		}
	}
	check("before", fair.DefaultPlans()["free"])
	if _, err := b.svc.SetLimits(b.ctx, tn.ID, "", tenantctx.Limits{MaxRunning: 3, MaxWaiting: 40}, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	check("after SetLimits", fair.Policy{Weight: 1, MaxRunning: 3, MaxWaiting: 40})
	// The next reminder enqueue indeed carries it into `low`.
	if _, err := b.enq.Enqueue(b.ctx, tasks.InvoiceReminder{TenantID: tn.ID, InvoiceID: 1, Day: "2026-01-02"}); err != nil {
		t.Fatal(err)
	}
	check("after a reminder", fair.Policy{Weight: 1, MaxRunning: 3, MaxWaiting: 40})
}

// TestHoldsReleaseOnlyTheirOwnReason: pause, suspend, resume the queue,
// resume the tenant: the queue's resume lifts the pause only (the
// suspension still holds the work queues), the tenant's resume the rest.
func TestHoldsReleaseOnlyTheirOwnReason(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "hold-order")
	b.pdfs(t, tn, 3)
	if _, err := b.svc.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Suspend(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if q := b.queue(t, tn.ID); !q.Paused || !q.Suspended || inDefault(t, q).Admitted != 0 || inDefault(t, q).Waiting != 3 {
		t.Fatalf("paused and suspended: %+v", q)
	}
	if err := b.svc.ResumeQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if q := b.queue(t, tn.ID); q.Paused || !q.Suspended || inDefault(t, q).Admitted != 0 || inDefault(t, q).Waiting != 3 {
		t.Fatalf("queue resumed, tenant still suspended: %+v", q)
	}
	if _, err := b.svc.Resume(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if q := b.queue(t, tn.ID); q.Paused || q.Suspended || inDefault(t, q).Admitted != 1 || inDefault(t, q).Waiting != 2 {
		t.Fatalf("both resumed: %+v", q)
	}
	// The other order: suspend, pause, resume the tenant: still paused.
	if _, err := b.svc.Suspend(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Resume(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if q := b.queue(t, tn.ID); !q.Paused || q.Suspended || q.Admitted != 0 || inDefault(t, q).Waiting != 3 {
		t.Fatalf("tenant resumed, queue still paused: %+v", q)
	}
	if err := b.svc.ResumeQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if q := b.queue(t, tn.ID); q.Paused || inDefault(t, q).Admitted != 1 {
		t.Fatalf("all resumed: %+v", q)
	}
}
