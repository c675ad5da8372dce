package tenancy_test

import (
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
)

// TestStaleMoveCheckKeepsAnOperatorsResume: a move whose switch was not
// propagated (Redis went away) tells the operator to resume the queue once
// Redis works. An operator who does so before a worker's stale-move check
// ran (Redis back for less than 30 s, or no worker running) gets a
// successful resume; the check must not pause the queue again afterwards.
func TestStaleMoveCheckKeepsAnOperatorsResume(t *testing.T) {
	t.Parallel()
	b, acme, svc, down := notPropagatedMove(t)
	_, err := svc.Move(b.ctx, acme.ID, "second", "test", tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 300 * time.Millisecond, Poll: 10 * time.Millisecond})
	if !errors.Is(err, storage.ErrInvalidationFailed) {
		t.Fatalf("Move with Redis gone after the switch: %v, want ErrInvalidationFailed", err)
	}
	down.Store(false) // Redis is back
	// The operator follows the move's advice and resumes the queue.
	if err := svc.ResumeQueue(b.ctx, acme.ID, "operator"); err != nil {
		t.Fatal(err)
	}
	// A worker's check runs afterwards.
	if _, err := svc.ReleaseStaleMoves(b.ctx); err != nil {
		t.Fatal(err)
	}
	q, err := svc.Queue(b.ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	if inDefault(t, q).Paused {
		t.Errorf("the operator resumed the queue (successfully) after the move, then the stale-move check paused it again: %+v", inDefault(t, q))
	}
}
