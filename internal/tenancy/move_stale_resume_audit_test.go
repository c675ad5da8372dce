package tenancy_test

import (
	"context"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/storage"
)

// holdSync is a catalog whose SyncQueuePaused (the settle of a pause or
// resume, after its hold or release) signals reached and waits for go on.
type holdSync struct {
	storage.Catalog
	reached chan struct{}
	proceed chan struct{}
	once    sync.Once
}

func (c *holdSync) SyncQueuePaused(ctx context.Context, id string, read func(context.Context) (bool, error)) (bool, error) {
	c.once.Do(func() {
		close(c.reached)
		<-c.proceed
	})
	return c.Catalog.SyncQueuePaused(ctx, id, read)
}

// TestStaleMoveCheckRacingAResumeStillSettling: as
// TestStaleMoveCheckKeepingAQueuePausedLetsARacingResumeStand, but the
// operator's resume is not whole between the check's record of its pause
// and its hold: it released the queue before the check's hold (finding no
// pause to release), and it is still settling, its ActionQueueResumed
// entry not written, when the check reads the audit log again. The check
// cannot see it; the two are settled as a racing pause and resume are:
// the check's hold changed the first queue last, so the queue stays
// paused, and what the catalog records agrees with Redis (a Redis data
// loss keeps it paused). A second resume runs the queue, and the next
// check leaves it running: the move's hold is gone.
func TestStaleMoveCheckRacingAResumeStillSettling(t *testing.T) {
	t.Parallel()
	b := setupMoveLoss(t)
	tn := b.staleMove(t, "moverec-late")

	slow := &holdSync{Catalog: b.catalog, reached: make(chan struct{}), proceed: make(chan struct{})}
	resumeErr := make(chan error, 1)
	rc := &resumeAfterPauseRecord{Catalog: b.catalog}
	rc.resume = func() {
		// The operator's resume starts as the check records its pause; its
		// release is done when it reaches its settle, which waits.
		go func() { resumeErr <- b.service(slow).ResumeQueue(b.ctx, tn.ID, "operator") }()
		select {
		case <-slow.reached:
		case err := <-resumeErr:
			t.Errorf("the resume ended before its settle: %v", err)
		}
	}
	if _, err := b.service(rc).ReleaseStaleMoves(b.ctx); err != nil {
		t.Fatal(err)
	}
	close(slow.proceed)
	if err := <-resumeErr; err != nil {
		t.Fatalf("the operator's resume: %v", err)
	}
	if q := inDefault(t, b.queue(t, tn.ID)); q.Moving || !q.Paused {
		t.Fatalf("after the check and a resume still settling as it made its pause, the queue is %+v; want paused (the later change), not moving", q)
	}
	checkRecordFollowsRedis(t, b.lossBundle, tn.ID, true)
	if err := b.svc.ResumeQueue(b.ctx, tn.ID, "operator"); err != nil {
		t.Fatalf("the operator's second resume: %v", err)
	}
	if _, err := b.svc.ReleaseStaleMoves(b.ctx); err != nil {
		t.Fatal(err)
	}
	if q := inDefault(t, b.queue(t, tn.ID)); q.Moving || q.Paused {
		t.Fatalf("after a second resume and another check the queue is %+v; want it running", q)
	}
	checkRecordFollowsRedis(t, b.lossBundle, tn.ID, false)
}
