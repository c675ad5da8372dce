package tenancy_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// delayedRecord is a catalog whose at-th write of a pause's record
// (SetQueuePaused or SyncQueuePaused, counted together) first runs hook,
// before the write reaches the catalog (before it takes any lock): a
// write of the record that lands late, after another operator's whole
// call.
type delayedRecord struct {
	storage.Catalog
	mu     sync.Mutex
	writes int
	at     int
	hook   func()
}

// before counts a write of the record and runs the hook on the at-th.
func (c *delayedRecord) before() {
	c.mu.Lock()
	c.writes++
	var hook func()
	if c.writes == c.at {
		hook = c.hook
	}
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
}

func (c *delayedRecord) SetQueuePaused(ctx context.Context, id string, paused bool) error {
	c.before()
	return c.Catalog.SetQueuePaused(ctx, id, paused)
}

func (c *delayedRecord) SyncQueuePaused(ctx context.Context, id string, read func(context.Context) (bool, error)) (bool, error) {
	c.before()
	return c.Catalog.SyncQueuePaused(ctx, id, read)
}

// checkRecordFollowsRedis fails t unless the catalog's record of the
// tenant's pause says what Redis holds in every queue (want: paused).
func checkRecordFollowsRedis(t *testing.T, b *lossBundle, id string, want bool) {
	t.Helper()
	recorded, err := b.catalog.PausedTenants(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range (tasks.Layout{}).Queues() {
		held, err := b.d.HeldFor(b.ctx, id, fair.Paused, q)
		if err != nil {
			t.Fatal(err)
		}
		if held != want {
			t.Errorf("queue %s: paused in Redis = %v, want %v (the last operator call's)", q, held, want)
		}
	}
	if got := slices.Contains(recorded, id); got != want {
		t.Errorf("the catalog records the pause = %v (paused tenants %v), but Redis says paused = %v", got, recorded, want)
	}
}

// afterLoss flushes Redis, enqueues two renders of tn and beats: it
// returns the ids of those that reached asynq and whether the tenant's
// queue answers paused.
func afterLoss(t *testing.T, b *lossBundle, tn tenantctx.Tenant) ([]string, bool) {
	t.Helper()
	if err := b.rdb.FlushAll(b.ctx).Err(); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	b.renders(t, tn, 1, 2)
	b.beat(t)
	return b.inAsynq(t, tn), b.queue(t, tn.ID).Paused
}

// TestPauseRecordFollowsARacingResume: a pause whose settled record write
// lands after another operator's whole resume (which released the hold
// after the pause made it, so the resume wins) leaves no record: the
// catalog agrees with Redis, and after Redis loses its data the tenant's
// work runs, as the last operator call said.
func TestPauseRecordFollowsARacingResume(t *testing.T) {
	t.Parallel()
	b := setupLoss(t)
	tn := b.active(t, "pauserec-resume")
	b.beat(t)
	// The pause's writes: its record before the hold (1st), its settle's
	// (2nd), held back until the resume returned.
	rc := &delayedRecord{Catalog: b.catalog, at: 2}
	rc.hook = func() {
		if err := b.svc.ResumeQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
			t.Errorf("the racing resume: %v", err)
		}
	}
	pausing := b.twoServices(rc)
	if _, err := pausing.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if rc.writes < 2 {
		t.Fatalf("the pause wrote its record %d times, want its settle's write held back", rc.writes)
	}
	checkRecordFollowsRedis(t, b, tn.ID, false)
	if ids, paused := afterLoss(t, b, tn); len(ids) != 2 || paused {
		t.Fatalf("resumed last, after Redis lost its data: in asynq %v, paused %v; want both renders admitted, not paused", ids, paused)
	}
}

// TestResumeRecordFollowsARacingPause: the other way round, a resume
// whose settled record write lands after another operator's whole pause
// (which held again after the resume released, so the pause wins) keeps
// the record: after Redis loses its data the tenant's work is held again.
func TestResumeRecordFollowsARacingPause(t *testing.T) {
	t.Parallel()
	b := setupLoss(t)
	tn := b.active(t, "pauserec-pause")
	b.beat(t)
	if _, err := b.svc.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	// The resume's only write: its settle's, held back until the pause
	// returned.
	rc := &delayedRecord{Catalog: b.catalog, at: 1}
	rc.hook = func() {
		if _, err := b.svc.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
			t.Errorf("the racing pause: %v", err)
		}
	}
	resuming := b.twoServices(rc)
	if err := resuming.ResumeQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if rc.writes < 1 {
		t.Fatal("the resume wrote no record")
	}
	checkRecordFollowsRedis(t, b, tn.ID, true)
	if ids, paused := afterLoss(t, b, tn); len(ids) != 0 || !paused {
		t.Fatalf("paused last, after Redis lost its data: in asynq %v, paused %v; want none admitted, paused", ids, paused)
	}
}
