package tenancy_test

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
)

// TestPauseDuringMoveIsKept: an operator pauses a tenant's queue
// while a move of that tenant is copying (to stop a misbehaving tenant,
// say). The move resumes the queue only "unless an operator had paused
// it": the operator's pause, made during the move, must still hold after it.
func TestPauseDuringMoveIsKept(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	b.pdfs(t, acme, 3)
	opts := tenancy.WithBeforeSwitch(tenancy.MoveOptions{Grace: time.Millisecond}, func(ctx context.Context) error {
		_, err := b.svc.PauseQueue(ctx, acme.ID, tenancy.ActorAdmin) // the other operator
		return err
	})
	if _, err := b.svc.Move(b.ctx, acme.ID, "second", "test", opts); err != nil {
		t.Fatal(err)
	}
	if q := inDefault(t, b.queue(t, acme.ID)); !q.Paused {
		t.Fatalf("an operator paused the queue during the move; after the move it is not paused (%+v)", q)
	}
}
