package fair_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestReleaseRetriesDoNotUndoALaterHold: Release retries for up to a second
// while a parked task is still being handed back. A Hold of the same reason
// made meanwhile (an operator pauses again right after a resume) must
// stand: the retries may release parked tasks, not clear the hold again.
func TestReleaseRetriesDoNotUndoALaterHold(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_race"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b)
	holdAndPark(t, b, tn, id, fair.Paused) // asynq still holds it active: Release retries
	released := make(chan int, 1)
	go func() {
		n, _ := b.d.Release(ctx, tn, fair.Paused, q)
		released <- n
	}()
	// The resume's first attempt cleared the pause; it is retrying now
	// (the parked task cannot be handed back while asynq holds it). A
	// fixed wait here was not enough on a loaded machine: when Release's
	// first attempt came after the Hold, the resume was the later change
	// and rightly lifted the pause.
	testenv.WaitFor(t, 30*time.Second, "the resume's first attempt", func() bool { return !stats(t, b, tn).Paused })
	if _, err := b.d.Hold(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); !s.Paused {
		t.Fatalf("just paused: %+v", s)
	}
	<-released
	if s := stats(t, b, tn); !s.Paused {
		t.Fatalf("the pause made after the resume was undone by the resume's retries: %+v", s)
	}
	// And the paused tenant's new work is admitted.
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 1, 1)
	if got := dequeue(t, b); got != "" {
		t.Fatalf("paused tenant's task %s was admitted and taken by a worker", got)
	}
}

// TestHoldPastMaxWaitingRefusesEnqueues: a pause moves the tenant's
// admitted tasks that asynq has not started back into its backlog, also on
// top of a full one, so the backlog may hold more than max_waiting (by at
// most what was admitted); its enqueues are then refused until it is under
// the cap again, and nothing is dropped.
func TestHoldPastMaxWaitingRefusesEnqueues(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	ctx := context.Background()
	const tn = "tn_mw_hold"
	pol := fair.Policy{Weight: 1, MaxWaiting: 5}
	enqueue(t, b, tn, pol, 0, 5) // 4 admitted, 1 waiting
	enqueue(t, b, tn, pol, 5, 4) // a full backlog: 5 waiting
	if s := stats(t, b, tn); s.Waiting != 5 || s.Admitted != 4 {
		t.Fatalf("before: %+v", s)
	}
	if _, err := b.d.Hold(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Waiting != 9 || s.Admitted != 0 {
		t.Fatalf("after the pause: %+v; want all 9 tasks waiting", s)
	}
	_, err := b.d.Enqueue(ctx, tn, pol, []fair.Task{task(tn, 100)})
	var full *fair.FullError
	if !errors.As(err, &full) || full.Waiting != 9 {
		t.Fatalf("enqueue over the cap: %v, want a FullError with 9 waiting", err)
	}
	if _, err := b.d.Release(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Waiting+s.Admitted != 9 {
		t.Fatalf("after the resume: %+v; want the 9 tasks", s)
	}
}
